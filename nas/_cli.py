"""Shared command-line plumbing: argument parsing and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas._errors import NasError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad option as one ``error:`` line (exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Call ``main(argv)``; user errors become one ``error:`` line and exit status 2."""
    try:
        return main(argv) or 0
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: completed work is saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
