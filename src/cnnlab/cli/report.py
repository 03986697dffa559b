"""`cnnlab report`: handler and parser (cli.py calls `register`). Heavy imports inside the
handler; user errors are UserError, printed by cnnlab.cli.run as one line."""

from __future__ import annotations

import sys


def command_report(arguments) -> int:
    from cnnlab.report import ReportConfig, build_report

    config = ReportConfig(runs=tuple(arguments.runs), out=arguments.out, survey=arguments.survey,
                          cache=arguments.cache, filters_photo=arguments.filters_photo,
                          title=arguments.title or "cnnlab report")
    result = build_report(config)
    for note in result.notes:
        print(f"cnnlab report: note: {note}", file=sys.stderr)
    print(f"{result.path} ({result.figures} figures)")
    return 0


def register(commands) -> None:
    """Add `report` to the CLI's subcommands."""
    report = commands.add_parser(
        "report", help="one self-contained HTML page: data, learning curves, metrics vs the tutorial, ROC, errors",
        description="Write one HTML file (figures embedded as PNG, no JavaScript, no network) describing the runs: "
                    "the data survey and sample photos, learning curves, the metrics table beside the tutorial's "
                    "published figures, ROC curves and the tutorial's predictions-vs-labels scatter, accuracy vs "
                    "model size and training time, confusion matrices, per-class accuracy, the most confidently "
                    "wrong photos and the edge-filter demo. Pictures describe the validation split; predictions "
                    "stored by `cnnlab evaluate` are reused, else computed from the best weights.")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `cnnlab train`")
    report.add_argument("--out", required=True, metavar="HTML", help="the HTML file to write (e.g. report.html)")
    report.add_argument("--survey", metavar="JSON", help="`cnnlab survey DATA --json` output, for the data section")
    report.add_argument("--cache", metavar="CACHE",
                        help="cache folder for photos and predictions (default: the one each run was trained on)")
    report.add_argument("--filters-photo", metavar="PATH",
                        help="photo for the edge-filter demo (default: a validation cat photo from the cache)")
    report.add_argument("--title", help="page title (default: cnnlab report)")
    report.set_defaults(handler=command_report)
