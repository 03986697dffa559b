"""What several subcommands share: the DATA argument and its environment variable."""

from __future__ import annotations

import os

from cnnlab.errors import UserError

DATA_ENVIRONMENT = "CNNLAB_DATA"


def data_argument(value: str | None) -> str:
    value = value or os.environ.get(DATA_ENVIRONMENT)
    if not value:
        raise UserError(f"no data folder: pass DATA (or --data) or set {DATA_ENVIRONMENT}")
    return value


def add_data(subparser) -> None:
    """DATA (positional or --data, default $CNNLAB_DATA) and --layout, for commands that read photos."""
    subparser.add_argument("data", nargs="?", metavar="DATA",
                           help=f"folder of photos (default: ${DATA_ENVIRONMENT})")
    subparser.add_argument("--data", dest="data_option", metavar="DATA", help="same as DATA")
    subparser.add_argument("--layout", choices=("auto", "folders", "kaggle"), default="auto",
                           help="label source: class subfolders or Kaggle names like cat.1.jpg (default: auto)")
