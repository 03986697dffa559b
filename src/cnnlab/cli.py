"""The `cnnlab` command: a thin argparse layer over the library (placeholder, grows per issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from cnnlab.runtime import prepare_process

    arguments = sys.argv[1:] if argv is None else argv
    if argv is None:
        prepare_process(arguments)
    print("cnnlab: no subcommands yet")
