"""Latency strings such as ``25ms``, parsed in one place."""

from __future__ import annotations

import re

from nas._errors import ConfigError

_UNIT_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d+))?\s*(s|ms|us|µs)\s*$")
_EXAMPLES = "write e.g. 25ms, 25 ms, 0.025s or 25000us"


def parse_latency(text: str) -> float:
    """Milliseconds in ``text`` (``25ms``, ``25 ms``, ``0.025s``, ``25000us``).

    A bare number, a negative or zero value, or anything else is a :class:`ConfigError`.
    """
    raw = str(text).strip()
    match = _PATTERN.match(raw)
    if match is None:
        if re.fullmatch(r"[-+]?\s*[\d.]+(?:[eE][-+]?\d+)?", raw):
            if raw.startswith("-"):
                raise ConfigError(f"latency {raw!r} is negative: it must be positive ({_EXAMPLES})")
            raise ConfigError(f"latency {raw!r} has no unit: {_EXAMPLES}")
        if re.match(r"^\s*-", raw):
            raise ConfigError(f"latency {raw!r} is negative: it must be positive ({_EXAMPLES})")
        raise ConfigError(f"latency {raw!r} is not a duration: {_EXAMPLES}")
    number = float(match.group(1)) * 10 ** int(match.group(2) or 0)
    value = number * _UNIT_MS[match.group(3)]
    if value <= 0:
        raise ConfigError(f"latency {raw!r} must be positive ({_EXAMPLES})")
    return value


def format_ms(value: float) -> str:
    """``12.34 ms`` / ``850 µs`` style."""
    return f"{value:.3g} ms" if value >= 1 else f"{value * 1000:.3g} µs"
