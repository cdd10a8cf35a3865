"""Checkpoints: plain dicts written atomically, read only with ``weights_only=True``.

A checkpoint holds ``format``, ``kind`` (``supernet`` or ``model``), ``state_dict``, the
``space`` (supernet) or ``arch`` (model; ``network`` for a reference network such as
MobileNetV3) as plain dicts, and metadata: ``data`` (source, hash, split), ``train``
(recipe), ``metrics``, ``versions``. Nothing is unpickled beyond
tensors and builtin containers, so a checkpoint from anywhere is safe to open.
"""

from __future__ import annotations

import datetime
import os
import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import torch

from nas._errors import CheckpointError, ConfigError
from nas.arch import ArchConfig
from nas.models import (
    CHANNEL_MATCHES,
    SUPERNET_LAYOUT,
    ModelLayout,
    ReferenceNet,
    ShuffleNetV2,
    Supernet,
)
from nas.space import SearchSpace

FORMAT = "shufflenas-checkpoint-v1"
KINDS = ("supernet", "model", "int8")


def versions() -> dict[str, str]:
    import torchvision

    import nas

    return {
        "shufflenas": str(nas.__version__),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format, versions, time) via a temporary file and a rename."""
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **payload,
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read a toolkit checkpoint safely; every problem is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln for ln in str(exc).splitlines() if "Unsupported global" in ln]
        if not lines:
            raise CheckpointError(
                f"{path} is not a readable checkpoint (corrupt or truncated?)"
            ) from None
        what = lines[0].split("GLOBAL", 1)[-1].split(" was ")[0].strip()
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain containers ({what}); refused "
            "to unpickle it (weights_only)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated?): "
            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a shufflenas checkpoint (no '{FORMAT}' format "
            "tag); train one with python -m nas.train"
        )
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(
            f"{path} is a {payload.get('kind')} checkpoint; a {kind} checkpoint is needed here"
        )
    if kind == "supernet":  # refused here, before a caller decodes data or writes a run
        _check_supernet_layout(payload, str(path))
    return payload


def _check_supernet_layout(payload: dict[str, Any], where: str) -> None:
    layout = payload.get("supernet_layout", 1)
    if layout != SUPERNET_LAYOUT:
        raise CheckpointError(
            f"{where} has weight layout v{layout}, this version reads v{SUPERNET_LAYOUT} "
            "(weights shared by channel identity): retrain it with "
            "python -m nas.train --space ..."
        )


def arch_of(payload: dict[str, Any]) -> ArchConfig:
    try:
        return ArchConfig.from_dict(payload["arch"])
    except KeyError:
        raise CheckpointError("checkpoint has no 'arch': it is not a model checkpoint") from None
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint arch is invalid: {exc}") from None


def space_of(payload: dict[str, Any]) -> SearchSpace:
    try:
        return SearchSpace.from_dict(payload["space"])
    except KeyError:
        raise CheckpointError(
            "checkpoint has no 'space': it is not a supernet checkpoint"
        ) from None
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint space is invalid: {exc}") from None


def _load_state(module: torch.nn.Module, state: Any, what: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{what} weights do not fit the recorded architecture: {str(exc).splitlines()[0][:200]}"
        ) from None


def layout_of(payload: dict[str, Any]) -> ModelLayout | None:
    """The channel layout of a pruned model's checkpoint (None: the arch's own)."""
    if payload.get("layout") is None:
        return None
    try:
        return ModelLayout.from_dict(payload["layout"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint layout is invalid: {exc}") from None


def model_from_checkpoint(payload: dict[str, Any]) -> ShuffleNetV2:
    """The standalone model of a ``model`` checkpoint (pruned ones rebuilt from their
    stored channel layout), weights loaded, in eval mode."""
    try:
        model = ShuffleNetV2(arch_of(payload), layout=layout_of(payload))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint layout does not fit its arch: {exc}") from None
    _load_state(model, payload.get("state_dict"), "model")
    return model.eval()


def network_of(payload: dict[str, Any]) -> ArchConfig | ReferenceNet:
    """What a ``model`` checkpoint holds: a ShuffleNetV2 arch or a reference network."""
    if payload.get("network") is None:
        return arch_of(payload)
    try:
        return ReferenceNet.from_dict(payload["network"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint network is invalid: {exc}") from None


def network_from_checkpoint(payload: dict[str, Any]) -> torch.nn.Module:
    """Any ``model`` checkpoint's network (ShuffleNetV2 or reference), loaded, in eval mode."""
    network = network_of(payload)
    if isinstance(network, ArchConfig):
        return model_from_checkpoint(payload)
    model = network.build()
    _load_state(model, payload.get("state_dict"), "model")
    return model.eval()


def supernet_from_checkpoint(payload: dict[str, Any]) -> Supernet:
    """The supernet of a ``supernet`` checkpoint, weights loaded, in eval mode."""
    _check_supernet_layout(payload, "supernet checkpoint")
    match = payload.get("channel_match", "id")
    if match not in CHANNEL_MATCHES:
        raise CheckpointError(
            f"supernet checkpoint matches channels by {match!r}, this version knows "
            f"{' and '.join(CHANNEL_MATCHES)}: retrain it with python -m nas.train --space ..."
        )
    net = Supernet(space_of(payload), channel_match=match)
    _load_state(net, payload.get("state_dict"), "supernet")
    norms = net.branch_norms()
    if norms and all(not bn.weight.any() and not bn.bias.any() for bn in norms):
        raise CheckpointError(
            "supernet checkpoint has dead stride-1 branches (every branch's last BatchNorm "
            "at scale 0 and shift 0: the zero init of earlier versions, under which those "
            "branches never train): retrain it with python -m nas.train --space ..."
        )
    return net.eval()
