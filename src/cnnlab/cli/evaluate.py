"""`cnnlab evaluate`: score a run's best weights on validation and test."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.common import add_format


def command_evaluate(arguments) -> int:
    from cnnlab.training.evaluation import evaluate_run
    from cnnlab.training.evaluation_text import format_evaluation

    splits = ("val", "test") if arguments.split == "all" else (arguments.split,)
    result = evaluate_run(arguments.run, arguments.cache, splits)
    print(json.dumps(result, indent=2) if arguments.format == "json" else format_evaluation(result))
    return 0


def register(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score a run's best weights: MSE, log loss, Pearson, AUC, accuracies, confusion",
        description="Evaluate RUN's best weights on validation and test. The threshold is chosen on validation "
                    "and applied unchanged to test; the tutorial's best-of-thresholds figure is shown beside it.")
    evaluate.add_argument("run", help="run folder written by `cnnlab train`")
    evaluate.add_argument("--cache", metavar="CACHE", help="cache folder (default: the one the run was trained on)")
    evaluate.add_argument("--data", dest="cache", help=argparse.SUPPRESS)  # before --cache named caches
    evaluate.add_argument("--split", choices=("val", "test", "all"), default="all", help="which split(s) to score")
    add_format(evaluate)
    evaluate.set_defaults(handler=command_evaluate)
