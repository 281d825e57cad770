"""The one error type for bad input, and the command-line wrapper that reports it.

A leaf module (standard library only), so that ``facerecon.config`` can raise
the same error as every stage without importing numpy, trimesh or torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class InputError(ValueError):
    """Bad input: the message names the file (or config key) and what is wrong with it."""


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a command-line ``main``; turn InputError into one clear line and exit code 2."""
    try:
        main(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
