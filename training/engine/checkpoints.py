"""Atomic, resumable training checkpoints: ``checkpoints/step-XXXXXXXX`` folders (model, optimizer
state keyed by structured parameter names, ``state.json``) and a ``LATEST`` pointer.

A checkpoint is written into a temporary folder and renamed into place, so a kill at any moment
leaves the previous one intact; both trainers resume from ``latest_checkpoint``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paddle

from .runs import write_json_atomic

CHECKPOINTS_DIR = "checkpoints"
LATEST_NAME = "LATEST"
STATE_NAME = "state.json"
MODEL_NAME = "model.pdparams"
OPTIMIZER_NAME = "optimizer.pdopt"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def optimizer_state_by_structured_name(optimizer: paddle.optimizer.Optimizer,
                                       model: paddle.nn.Layer) -> dict[str, Any]:
    """``optimizer.state_dict()`` re-keyed by structured parameter names, values copied to numpy."""
    by_generated = {param.name: name for name, param in model.named_parameters()}
    generated = sorted(by_generated, key=len, reverse=True)
    out: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        owner = next((g for g in generated if key.startswith(g + "_")), None)
        new_key = f"{by_generated[owner]}::{key[len(owner) + 1:]}" if owner else key
        out[new_key] = value.numpy().copy() if hasattr(value, "numpy") else value
    return out


def restore_optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                            state: dict[str, Any]) -> None:
    """Inverse of ``optimizer_state_by_structured_name`` for this process's parameter names."""
    by_structured = {name: param.name for name, param in model.named_parameters()}
    restored: dict[str, Any] = {}
    for key, value in state.items():
        if "::" in key:
            structured, suffix = key.split("::", 1)
            if structured not in by_structured:
                raise ValueError(f"checkpoint has optimizer state for unknown parameter {structured!r}")
            key = f"{by_structured[structured]}_{suffix}"
        restored[key] = value
    optimizer.set_state_dict(restored)


def save_checkpoint(out_dir: Path, *, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
                    state: dict[str, Any], keep: int = 2,
                    extra_weights: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write ``checkpoints/step-XXXXXXXX`` through a temporary folder and one rename, then point
    ``LATEST`` at it; a kill at any moment leaves the previous checkpoint intact. ``extra_weights``
    (e.g. an EMA of the model) are saved beside the model as ``<name>.pdparams``."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{int(state['step']):08d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    paddle.save(model.state_dict(), str(tmp / MODEL_NAME))
    paddle.save(optimizer_state_by_structured_name(optimizer, model), str(tmp / OPTIMIZER_NAME))
    for extra_name, weights in (extra_weights or {}).items():
        paddle.save(dict(weights), str(tmp / f"{extra_name}.pdparams"))
    write_json_atomic(tmp / STATE_NAME, state)
    for file in tmp.iterdir():
        with file.open("rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():  # same step saved again (e.g. cancel right after a periodic save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    write_json_atomic(root / LATEST_NAME, {"name": name, "step": int(state["step"])})
    _prune(root, keep=keep, protect=name)
    return final


def _prune(root: Path, *, keep: int, protect: str) -> None:
    done = sorted((p for p in root.glob("step-*") if (p / STATE_NAME).exists()), key=lambda p: p.name)
    for old in done[:-max(1, keep)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _read(path: Path) -> Checkpoint | None:
    try:
        state = json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (path / MODEL_NAME).exists() or not (path / OPTIMIZER_NAME).exists():
        return None
    return Checkpoint(path, state)


def latest_checkpoint(out_dir: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint under ``out_dir`` (``LATEST`` first, else a scan)."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    try:
        pointer = json.loads((root / LATEST_NAME).read_text(encoding="utf-8"))
        found = _read(root / pointer["name"])
        if found is not None:
            return found
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for path in sorted(root.glob("step-*"), key=lambda p: p.name, reverse=True):
        found = _read(path)
        if found is not None:
            return found
    return None


def load_checkpoint(checkpoint: Checkpoint, *, model: paddle.nn.Layer,
                    optimizer: paddle.optimizer.Optimizer | None = None) -> None:
    model.set_state_dict(paddle.load(str(checkpoint.path / MODEL_NAME)))
    if optimizer is not None:
        restore_optimizer_state(optimizer, model, paddle.load(str(checkpoint.path / OPTIMIZER_NAME)))


__all__ = ["CHECKPOINTS_DIR", "LATEST_NAME", "MODEL_NAME", "OPTIMIZER_NAME", "STATE_NAME", "Checkpoint",
           "latest_checkpoint", "load_checkpoint", "optimizer_state_by_structured_name", "restore_optimizer_state",
           "save_checkpoint"]
