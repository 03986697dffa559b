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
from pathlib import Path

from cnnlab import __version__
from cnnlab.errors import EXIT_INTERRUPTED, UserError
from cnnlab.cli_explain import register as register_explain_commands
from cnnlab.cli_compare import register as register_compare_commands
from cnnlab.cli_download import register as register_download_commands
from cnnlab.cli_export import register as register_export_commands
from cnnlab.cli_report import register as register_report_commands
from cnnlab.cli_predict import register as register_predict_commands
from cnnlab.cli_serve import register as register_serve_commands
from cnnlab.cli_train import register as register_train_commands

DATA_ENVIRONMENT = "CNNLAB_DATA"


def data_argument(value: str | None) -> str:
    value = value or os.environ.get(DATA_ENVIRONMENT)
    if not value:
        raise UserError(f"no data folder: pass DATA (or --data) or set {DATA_ENVIRONMENT}")
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


def command_models(arguments) -> int:
    from cnnlab.models import describe_models

    models = describe_models()
    if arguments.json:
        print(json.dumps(models, indent=2))
        return 0
    print(f"{'name':14} {'family':9} {'parameters':>12} {'MFLOPs/img':>10}  recipe / description")
    for model in models:
        recipe = model["recipe"]
        print(f"{model['name']:14} {model['family']:9} {model['parameters']:>12,} {model['forward_flops'] / 1e6:>10.1f}  "
              f"{recipe['loss']}, {recipe['optimizer']} lr {recipe['learning_rate']:g}, batch {recipe['batch_size']}, "
              f"{recipe['epochs']} epochs, pixels {recipe['pixel_scale']} - {model['description']}")
    return 0


def command_evaluate(arguments) -> int:
    from cnnlab.evaluation_text import format_evaluation
    from cnnlab.training.evaluation import evaluate_run

    splits = ("val", "test") if arguments.split == "all" else (arguments.split,)
    result = evaluate_run(arguments.run, arguments.data, splits)
    print(json.dumps(result, indent=2) if arguments.json else format_evaluation(result))
    return 0


def command_reproduce(arguments) -> int:
    from cnnlab.experiments.reproduce import BASELINE_NAMES, MODERN_MODELS, TUTORIAL_MODELS, ReproduceConfig, reproduce

    def names(text, default):
        return tuple(part for part in text.split(",") if part) if text is not None else default

    config = ReproduceConfig(
        data=data_argument(arguments.data), out=arguments.out, quick=arguments.quick,
        models=names(arguments.models, TUTORIAL_MODELS), baselines=names(arguments.baselines, BASELINE_NAMES),
        train_per_class=arguments.train, val_per_class=arguments.val, test_per_class=arguments.test,
        max_epochs=arguments.max_epochs, seed=arguments.seed, workers=arguments.workers,
        modern=names(arguments.modern, MODERN_MODELS),
    )
    reproduce(config)
    print((Path(arguments.out) / "results.md").read_text())
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
    prepare.add_argument("--shards", "--num-shards", dest="shards", type=int, metavar="N",
                         help="write N independent cache shards (a photo's shard is a hash of its path; same split "
                              "as unsharded) plus a top-level manifest; completes shards prepared with --shard-index")
    prepare.add_argument("--shard-index", type=int, metavar="I",
                         help="prepare only shard I of --shards N (e.g. one per machine, same DATA path on each); "
                              "then run with --shards N alone to complete the cache")
    prepare.set_defaults(handler=command_prepare)

    models = commands.add_parser("models", help="list registered models with parameters, FLOPs and recipes")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(handler=command_models)

    register_train_commands(commands)

    evaluate = commands.add_parser(
        "evaluate", help="score a run's best weights: MSE, log loss, Pearson, AUC, accuracies, confusion",
        description="Evaluate RUN's best weights on validation and test. The threshold is chosen on validation "
                    "and applied unchanged to test; the tutorial's best-of-thresholds figure is shown beside it.")
    evaluate.add_argument("run", help="run folder written by `cnnlab train`")
    evaluate.add_argument("--data", help="cache folder (default: the one the run was trained on)")
    evaluate.add_argument("--split", choices=("val", "test", "all"), default="all", help="which split(s) to score")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=command_evaluate)

    reproduce = commands.add_parser(
        "reproduce", help="the tutorial end to end: survey, prepare, train all its models, baselines, results table",
        description="Run Strika's 2019 tutorial end to end and write results.md / results.json beside the published "
                    "figures. Resumable: run the same command again to continue a cut run. The full run takes about "
                    "1.5 hours on 2 CPU cores (1 h 24 min measured); --quick takes a few minutes.")
    reproduce.add_argument("data", nargs="?", metavar="DATA", help=f"folder of photos (default: ${DATA_ENVIRONMENT})")
    reproduce.add_argument("--data", dest="data_option", metavar="DATA", help="same as DATA")
    reproduce.add_argument("--out", default="runs/reproduce", help="output folder (default: runs/reproduce)")
    reproduce.add_argument("--quick", action="store_true", help="512 train / 128 val / 128 test photos per class, <= 3 epochs")
    reproduce.add_argument("--models", help="comma-separated subset of the tutorial models (default: all five)")
    reproduce.add_argument("--modern", help="comma-separated modern models trained beside them on the same photos "
                           "(default: resnet9; '' for none; see `cnnlab models`)")
    reproduce.add_argument("--baselines", help="comma-separated baselines: majority,pixel-trees ('' for none)")
    reproduce.add_argument("--train", type=int, help="training photos per class (default 2048; quick 512)")
    reproduce.add_argument("--val", type=int, help="validation photos per class (default 512; quick 128)")
    reproduce.add_argument("--test", type=int, help="test photos per class (default 400; quick 128)")
    reproduce.add_argument("--max-epochs", type=int, help="cap every recipe's epochs (quick: 3)")
    reproduce.add_argument("--seed", type=int, default=0, help="seed for weights and batch order")
    reproduce.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    reproduce.set_defaults(handler=command_reproduce)

    register_explain_commands(commands)
    register_report_commands(commands)
    register_compare_commands(commands)
    register_predict_commands(commands)
    register_export_commands(commands)
    register_serve_commands(commands)
    register_download_commands(commands)
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if getattr(arguments, "data_option", None):
        arguments.data = arguments.data_option
    try:
        return arguments.handler(arguments)
    except UserError as error:
        # A user's mistake: one line naming the file or flag and the fix. Anything else is a
        # bug and keeps its traceback.
        print(f"cnnlab {arguments.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"cnnlab {arguments.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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
