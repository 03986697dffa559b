"""The `cnnlab` command: a thin argparse layer over the library, one module per stage.

Each subcommand parses its options, calls one library function and prints the result.
Heavy imports (Keras, PyTorch) happen inside the subcommands that need them, so `--help`,
`survey` and `prepare` start quickly. A cnnlab.errors.UserError is printed as one line with its
exit code (2 for usage, 1 when some inputs failed); every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from cnnlab.cli import (
    compare,
    data,
    download,
    evaluate,
    explain,
    export,
    info,
    predict,
    report,
    reproduce,
    serve,
    studio,
    train,
)
from cnnlab.cli.common import Parser
from cnnlab.errors import EXIT_INTERRUPTED, UserError
from cnnlab.version import __version__

# One module per stage, each adding its subcommands; this order is `cnnlab --help`'s.
STAGES = (info, data, train, evaluate, reproduce, explain, report, compare, predict, export, serve, studio, download)
# Commands that never run PyTorch start without the allocator's re-execution (a second
# interpreter start-up): the allocator only matters where tensors are allocated. `info` keeps it, since it reports the allocator in use.
NO_BACKEND_COMMANDS = frozenset({"models", "survey", "download", "compare"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Turn a folder of photos into trained, compared and explained image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    for stage in STAGES:
        stage.register(commands)
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


def needs_tuned_allocator(arguments: list[str]) -> bool:
    """False for help, the version, the commands that never run a backend, and `predict` unless
    it is told to use Keras (ONNX Runtime allocates once per batch; the first prediction after
    training, which makes the ONNX export with Keras, does without the tuning)."""
    if not arguments or {"-h", "--help", "--version"} & set(arguments):
        return False
    command = next((argument for argument in arguments if not argument.startswith("-")), None)
    if command == "predict":
        return "keras" in engine_arguments(arguments)
    return command not in NO_BACKEND_COMMANDS


def engine_arguments(arguments: list[str]) -> list[str]:
    """The values given to --engine (`--engine X` or `--engine=X`)."""
    values = [argument.split("=", 1)[1] for argument in arguments if argument.startswith("--engine=")]
    return values + [following for argument, following in zip(arguments, arguments[1:]) if argument == "--engine"]


def main(argv: list[str] | None = None) -> None:
    from cnnlab.runtime import prepare_process

    arguments = sys.argv[1:] if argv is None else argv
    if argv is None and needs_tuned_allocator(arguments):
        prepare_process(arguments)
    try:
        status = run(arguments)
        sys.stdout.flush()
    except BrokenPipeError:
        # `cnnlab survey | head`: the reader left; that is not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)
