"""`cnnlab survey` and `cnnlab prepare`: look at a folder of photos, then decode it once into a cache."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.common import RawTextDefaultsShown, add_data, add_format, data_argument
from cnnlab.data.split_options import (DEFAULT_KIND, DEFAULT_SEED, SPLIT_KINDS, STRATIFIED_DEFAULTS, TUTORIAL_DEFAULTS,
                                       parse_split_value)
from cnnlab.errors import UserError

STRATIFIED, TUTORIAL = STRATIFIED_DEFAULTS, TUTORIAL_DEFAULTS
SPLIT_HELP = f"""\
splits:
  --split stratified (the default): each class's photos in a seeded order (a hash of seed and
    path, so adding photos never reshuffles the others); validation and test first, then train.
    --val, --test and --train each take
      a fraction F in (0, 1): that share of each class, rounded half up, at least 1
        (--val 0.2: 20% of every class; a class of 4 gives 1);
      a count N: a TOTAL over all classes, shared equally, the first classes (sorted)
        taking one more when N does not divide (--val 500 over 3 classes: 167, 167, 166).
    Defaults: --val {STRATIFIED['val']} --test {STRATIFIED['test']}, train all the rest, --seed {DEFAULT_SEED}; so a class
    needs at least 3 photos (1 each), or pass --test 0. Counts are set from the photos found;
    a photo that does not decode is skipped, reported and replaced by the next one, so they
    hold exactly.
  --split tutorial: the tutorial's split, per class, by numeric id: the first --train
    ({TUTORIAL['train']}) train, the last --val ({TUTORIAL['val']}) validate, --test ({TUTORIAL['test']}) from the ids in
    between. Counts are PER CLASS and whole numbers; a bad photo is skipped, not replaced.
    `cnnlab reproduce` uses it.
  The manifest records the options and each class's counts; prepare without split options
  never re-splits an existing cache (it says which options to pass).
"""


def _split_value(text: str):
    try:
        return parse_split_value(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        formatter_class=RawTextDefaultsShown,
        description="Decode every photo once into a uint8 cache (incremental, atomic), skipping and "
                    "reporting bad files, and write the train/val/test split manifest.",
        epilog=SPLIT_HELP)
    add_data(prepare)
    prepare.add_argument("--out", required=True, help="cache folder to create or update")
    prepare.add_argument("--size", default="94x125", help="WIDTHxHEIGHT after resizing (default: %(default)s, the tutorial's)")
    prepare.add_argument("--fit", choices=("stretch", "pad", "crop"), default="stretch",
                         help="stretch = the tutorial's plain resize; pad and crop keep the aspect ratio "
                              "(default: %(default)s)")
    prepare.add_argument("--exact-decode", action="store_true",
                         help="decode JPEGs at full size (the tutorial's exact pixels) instead of the faster DCT "
                              "downscale (default: off)")
    prepare.add_argument("--split", choices=SPLIT_KINDS, default=None,
                         help="stratified: seeded per class, bad photos replaced; tutorial: first 2,048 / last 512 "
                              f"per class by id (default: {DEFAULT_KIND}; see below)")
    for name, stratified in (("train", "all the rest"), ("val", STRATIFIED["val"]), ("test", STRATIFIED["test"])):
        prepare.add_argument(f"--{name}", type=_split_value, metavar="N|F",
                             help=f"{name} photos: a count N or a fraction F in (0, 1) (default: stratified "
                                  f"{stratified}; tutorial {TUTORIAL[name]} per class)")
    prepare.add_argument("--seed", type=int, default=None, help=f"seed of the stratified split (default: {DEFAULT_SEED})")
    prepare.add_argument("--classes", help="explicit class order, comma-separated (index = position) "
                                           "(default: sorted names; tutorial split: dog, cat)")
    prepare.add_argument("--workers", type=int, default=0, help="decoding processes (default: 0, one per core)")
    prepare.add_argument("--shards", "--num-shards", dest="shards", type=int, metavar="N",
                         help="write N independent cache shards (a photo's shard is a hash of its path; same split "
                              "as unsharded) plus a top-level manifest; completes shards prepared with --shard-index "
                              "(default: one unsharded cache)")
    prepare.add_argument("--shard-index", type=int, metavar="I",
                         help="prepare only shard I of --shards N (e.g. one per machine, same DATA path on each); "
                              "then run with --shards N alone to complete the cache (default: all shards)")
    prepare.set_defaults(handler=command_prepare)
