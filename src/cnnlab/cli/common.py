"""What several subcommands share: the DATA argument and its environment variable."""

from __future__ import annotations

import argparse
import os

from cnnlab.errors import UserError

DATA_ENVIRONMENT = "CNNLAB_DATA"


def data_argument(value: str | None) -> str:
    value = value or os.environ.get(DATA_ENVIRONMENT)
    if not value:
        raise UserError(f"no data folder: pass DATA (or --data) or set {DATA_ENVIRONMENT}")
    return value


class DefaultsShown(argparse.HelpFormatter):
    """Every option with a default says it in --help (unless its text already does)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class RawTextDefaultsShown(DefaultsShown, argparse.RawDescriptionHelpFormatter):
    """DefaultsShown, with the description and epilog printed as written (tables, indented lists)."""


class Parser(argparse.ArgumentParser):
    """The parser of every subcommand: defaults shown in --help."""

    def __init__(self, *arguments, **keywords):
        keywords.setdefault("formatter_class", DefaultsShown)
        super().__init__(*arguments, **keywords)


def add_format(subparser, choices=("table", "json"), help_text: str = "how to print the result") -> None:
    """--format for commands whose output is data; --json stays as a hidden alias of --format json."""
    subparser.add_argument("--format", choices=choices, default=choices[0], help=help_text)
    subparser.add_argument("--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS)


def add_data(subparser) -> None:
    """DATA (positional or --data, default $CNNLAB_DATA) and --layout, for commands that read photos."""
    subparser.add_argument("data", nargs="?", metavar="DATA",
                           help=f"folder of photos (default: ${DATA_ENVIRONMENT})")
    subparser.add_argument("--data", dest="data_option", metavar="DATA", help="the folder of photos, same as DATA")
    subparser.add_argument("--layout", choices=("auto", "folders", "kaggle"), default="auto",
                           help="label source: class subfolders or Kaggle names like cat.1.jpg (default: auto)")
