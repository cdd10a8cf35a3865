"""Command-line options for :class:`DataSpec`, one per field, shared by every command."""

from __future__ import annotations

import argparse
import dataclasses

from nas.cli import field_type
from nas.data._dataset import DataSpec

HELP = {
    "source": "embedded (default), cifar10, synthetic, an ImageFolder directory or a "
    ".tar/.tar.gz of one",
    "val_fraction": "share of training images held out for validation",
    "val_per_class": "validation images per class (instead of --val-fraction)",
    "train_per_class": "train on the first N images per class (by file name)",
    "test_per_class": "report test accuracy on the first N test images per class (smoke runs)",
    "test_fraction": "share held out for test, for sources without a test split",
    "split_seed": "seed of the validation (and test) split",
    "channels": "convert images to 1 (gray) or 3 channels; default: as stored",
    "image_size": "resize the stored images to this size; default: native",
}
FLAGS = {"source": "data"}  # field -> option name (``--data``), where they differ
CHOICES = {"channels": (1, 3)}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """A ``data`` group with one option per :class:`DataSpec` field (defaults and help
    from the dataclass); :func:`data_spec` turns the parsed options back into one."""
    group = parser.add_argument_group("data")
    defaults = DataSpec()
    for f in dataclasses.fields(DataSpec):
        name = FLAGS.get(f.name, f.name)
        default = getattr(defaults, f.name)
        shown = "" if default is None else f" (default {default})"
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=field_type(f),
            default=default,
            choices=CHOICES.get(f.name),
            help=HELP[f.name] + shown,
        )


def data_spec(args: argparse.Namespace) -> DataSpec:
    return DataSpec(
        **{f.name: getattr(args, FLAGS.get(f.name, f.name)) for f in dataclasses.fields(DataSpec)}
    )
