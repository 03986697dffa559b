"""The one exception for a user's mistake, and the exit codes the CLI gives it.

A `UserError` says what was wrong with the user's input (a file, a flag, a folder) and how to
fix it, in one line; `cnnlab` prints it without a traceback. It is a ValueError, so library
callers who catch ValueError keep working. Every other exception is a bug in cnnlab or a
library under it, and keeps its traceback: an internal NumPy or Keras ValueError must never
pass for a user mistake.
"""

from __future__ import annotations

# Exit codes shared by every subcommand.
EXIT_OK = 0
EXIT_SOME_INPUTS_FAILED = 1  # the command ran; some inputs (photos, files) failed and are reported
EXIT_USAGE = 2  # nothing was done: a bad flag, path or folder
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """A mistake in the user's input: printed as one line, exit status `exit_code` (default 2)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code
