"""`cnnlab survey` and `cnnlab prepare`: look at a folder of photos, then decode it once into a cache."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_data, add_format, data_argument
from cnnlab.errors import UserError


def command_survey(arguments) -> int:
    from cnnlab.data.survey import format_survey, survey

    report = survey(data_argument(arguments.data), arguments.layout, top=arguments.top)
    print(json.dumps(report, indent=2) if arguments.format == "json" else format_survey(report))
    return 0


def command_prepare(arguments) -> int:
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions, parse_size
    from cnnlab.data.splits import SplitOptions

    width, height = parse_size(arguments.size)
    options = PrepareOptions(
        decode=DecodeOptions(width, height, arguments.fit, draft=not arguments.exact_decode),
        split=SplitOptions(arguments.split, arguments.train, arguments.val, arguments.test, arguments.seed),
        layout=arguments.layout,
        classes=tuple(arguments.classes.split(",")) if arguments.classes else None,
        workers=arguments.workers,
    )
    if arguments.shard_index is not None and not arguments.shards:
        raise UserError("--shard-index needs --shards N (the total number of shards)")
    if arguments.shards:
        from cnnlab.data.shards import prepare_sharded

        result = prepare_sharded(data_argument(arguments.data), arguments.out, options, arguments.shards,
                                 only=arguments.shard_index)
    else:
        result = prepare(data_argument(arguments.data), arguments.out, options)
    print(result.summary())
    for item in result.skipped:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


def register(commands) -> None:
    survey = commands.add_parser("survey", help="count photos per class, top shapes, modes, unreadable files",
                                 description="Read every photo's header (no full decode) and summarise the folder.")
    add_data(survey)
    survey.add_argument("--top", type=int, default=10, help="how many of the most common shapes to list")
    add_format(survey)
    survey.set_defaults(handler=command_survey)

    prepare = commands.add_parser(
        "prepare", help="decode photos once into a memory-mapped cache with a split manifest",
        description="Decode every photo once into a uint8 cache (incremental, atomic), skipping and "
                    "reporting bad files, and write the train/val/test split manifest.")
    add_data(prepare)
    prepare.add_argument("--out", required=True, help="cache folder to create or update")
    prepare.add_argument("--size", default="94x125", help="WIDTHxHEIGHT after resizing (default: the tutorial's 94x125)")
    prepare.add_argument("--fit", choices=("stretch", "pad", "crop"), default="stretch",
                         help="stretch = the tutorial's plain resize; pad and crop keep the aspect ratio")
    prepare.add_argument("--exact-decode", action="store_true",
                         help="decode JPEGs at full size (the tutorial's exact pixels) instead of the faster DCT downscale")
    prepare.add_argument("--split", choices=("tutorial", "stratified"), default="tutorial",
                         help="tutorial: first 2,048 / last 512 per class by id; stratified: seeded, class-balanced")
    prepare.add_argument("--train", type=int, help="tutorial: per class (2048); stratified: total (default: all the rest)")
    prepare.add_argument("--val", type=int, help="tutorial: per class (512); stratified: total (500)")
    prepare.add_argument("--test", type=int, help="tutorial: per class (0); stratified: total (500)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    prepare.add_argument("--classes", help="explicit class order, comma-separated (index = position)")
    prepare.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    prepare.add_argument("--shards", "--num-shards", dest="shards", type=int, metavar="N",
                         help="write N independent cache shards (a photo's shard is a hash of its path; same split "
                              "as unsharded) plus a top-level manifest; completes shards prepared with --shard-index")
    prepare.add_argument("--shard-index", type=int, metavar="I",
                         help="prepare only shard I of --shards N (e.g. one per machine, same DATA path on each); "
                              "then run with --shards N alone to complete the cache")
    prepare.set_defaults(handler=command_prepare)
