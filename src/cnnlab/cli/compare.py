"""`cnnlab compare`: runs and reproductions in one table (see cnnlab.experiments.compare)."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_format


def command_compare(arguments) -> int:
    from cnnlab.experiments.compare import collect, render

    rows = collect(arguments.paths)
    as_json = arguments.format == "json"
    print(json.dumps(rows, indent=1) if as_json else render(rows), end="\n" if as_json else "")
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
    add_format(compare, help_text="table: a Markdown table and its reading; json: the rows")
    compare.set_defaults(handler=command_compare)
