"""`cnnlab compare`: runs and reproductions in one table (see cnnlab.experiments.compare)."""

from __future__ import annotations

import json


def command_compare(arguments) -> int:
    from cnnlab.experiments.compare import collect, render

    rows = collect(arguments.paths)
    print(json.dumps(rows, indent=1) if arguments.json else render(rows), end="" if not arguments.json else "\n")
    return 0


def register(commands) -> None:
    """Add `compare` to the CLI's subcommands."""
    compare = commands.add_parser(
        "compare", help="evaluated runs and reproductions side by side, beside the tutorial's figures",
        description="One table of every RUN named: run folders (`cnnlab train` + `cnnlab evaluate`) and "
                    "reproduction folders (`cnnlab reproduce`, all of their rows). Tutorial models, then modern "
                    "ones, then baselines; the tutorial's published figures in parentheses; the last column is "
                    "test accuracy with the threshold chosen on validation. Reads saved files only.")
    compare.add_argument("paths", nargs="+", metavar="RUN", help="run folders or reproduction folders")
    compare.add_argument("--json", action="store_true", help="the rows as JSON instead of a Markdown table")
    compare.set_defaults(handler=command_compare)
