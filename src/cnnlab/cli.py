"""The `cnnlab` command: a thin argparse layer over the library.

Each subcommand parses its options, calls one library function and prints the result.
Heavy imports (Keras, PyTorch) happen inside the subcommands that need them, so `--help`,
`survey` and `prepare` start quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cnnlab import __version__

DATA_ENVIRONMENT = "CNNLAB_DATA"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def data_argument(value: str | None) -> str:
    value = value or os.environ.get(DATA_ENVIRONMENT)
    if not value:
        raise CommandError(f"no data folder: pass DATA (or --data) or set {DATA_ENVIRONMENT}")
    return value


def command_info(arguments) -> int:
    from cnnlab.info import runtime_info

    info = runtime_info(load_backend=not arguments.no_backend)
    print(json.dumps(info, indent=2) if arguments.json else "\n".join(f"{key}: {value}" for key, value in info.items()))
    return 0


def command_survey(arguments) -> int:
    from cnnlab.data.survey import format_survey, survey

    report = survey(data_argument(arguments.data), arguments.layout, top=arguments.top)
    print(json.dumps(report, indent=2) if arguments.json else format_survey(report))
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
    result = prepare(data_argument(arguments.data), arguments.out, options)
    print(result.summary())
    for item in result.skipped:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Turn a folder of photos into trained, compared and explained image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser("info", help="versions, backend, threads and allocator in use")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--no-backend", action="store_true", help="do not import Keras (fast)")
    info.set_defaults(handler=command_info)

    def add_data(subparser):
        subparser.add_argument("data", nargs="?", metavar="DATA",
                               help=f"folder of photos (default: ${DATA_ENVIRONMENT})")
        subparser.add_argument("--data", dest="data_option", metavar="DATA", help="same as DATA")
        subparser.add_argument("--layout", choices=("auto", "folders", "kaggle"), default="auto",
                               help="label source: class subfolders or Kaggle names like cat.1.jpg (default: auto)")

    survey = commands.add_parser("survey", help="count photos per class, top shapes, modes, unreadable files",
                                 description="Read every photo's header (no full decode) and summarise the folder.")
    add_data(survey)
    survey.add_argument("--top", type=int, default=10, help="how many of the most common shapes to list")
    survey.add_argument("--json", action="store_true", help="print JSON")
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
    prepare.set_defaults(handler=command_prepare)
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if getattr(arguments, "data_option", None):
        arguments.data = arguments.data_option
    try:
        return arguments.handler(arguments)
    except (CommandError, ValueError) as error:
        print(f"cnnlab {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {arguments.command}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> None:
    from cnnlab.runtime import prepare_process

    arguments = sys.argv[1:] if argv is None else argv
    if argv is None:
        prepare_process(arguments)
    try:
        status = run(arguments)
        sys.stdout.flush()
    except BrokenPipeError:
        # `cnnlab survey | head`: the reader left; that is not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)
