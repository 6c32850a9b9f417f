"""User-facing errors and the one-line CLI wrapper every entry script uses.

A `UserError` is a mistake the user can fix (bad path, bad flag, bad file): its message names what failed,
the bad value, and the fix or the allowed values. CLIs print it as ONE line (no traceback) and exit 1.
"""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A problem the user can fix; printed as one line by `run_cli`."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run `main(argv)`; turn UserError (and Ctrl-C) into a one-line message and exit status."""
    try:
        code = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted (progress so far is kept; re-run the same command to resume)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)

