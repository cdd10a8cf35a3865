"""Errors that reach the user as one line, without a traceback."""

from __future__ import annotations


class NasError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option).

    Command-line entry points print ``error: <message>`` and exit non-zero; the message
    names the problem and, where there is one, the fix.
    """


class ConfigError(NasError, ValueError):
    """An invalid architecture, search space, hardware target or option value."""


class CheckpointError(NasError):
    """A missing, corrupt or incompatible checkpoint."""


class DataError(NasError):
    """A data source that is missing, empty, unreadable or wrongly laid out."""


class MeasurementError(NasError):
    """The measuring process failed on a model (its message says why)."""
