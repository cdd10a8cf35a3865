"""Shared command-line plumbing: argument parsing and one-line errors."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas._errors import NasError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad option as one ``error:`` line (exit 2), no usage dump.

    A value that starts with a minus sign and a digit (``--latency-budget -3ms``) stays the
    option's value, so its own validation can say what is wrong with it.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        joined: list[str] = []
        for item in argv:
            if (
                joined
                and joined[-1].startswith("--")
                and "=" not in joined[-1]
                and len(item) > 1
                and item[0] == "-"
                and (item[1].isdigit() or item[1] == ".")
            ):
                joined[-1] = f"{joined[-1]}={item}"
            else:
                joined.append(item)
        return super().parse_known_args(joined, namespace)

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


def field_type(f: dataclasses.Field[object]) -> Callable[[str], object]:
    """The argparse ``type`` of a dataclass field annotated ``int``, ``float`` or ``str``
    (optionally ``| None``), read from its annotation."""
    return {"int": int, "float": float, "str": str}[str(f.type).split("|")[0].strip()]
