"""Where an inference model's files sit (ours, the official PaddleClas/PaddleDetection layouts, an unpacked
archive's single subfolder), the input shapes its program declares, and PaddleDetection's ``infer_cfg.yml``.

A model directory holds a Paddle inference program (``inference.json`` from Paddle 3's PIR, or the older
``inference.pdmodel`` of the official archives) with its ``inference.pdiparams``, for detectors
``infer_cfg.yml``, and our ``manifest.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ModelFormatError, ModelNotFound
from .manifest import MANIFEST_NAME
from .preprocess import DetectionPreprocess

PROGRAM_NAMES = ("inference.json", "inference.pdmodel", "model.json", "model.pdmodel")


@dataclass(frozen=True)
class ModelFiles:
    """The files of one inference model, wherever they sit."""

    program: Path
    params: Path
    infer_cfg: Path | None = None
    manifest: Path | None = None

    @property
    def program_format(self) -> str:
        return "pdmodel" if self.program.suffix == ".pdmodel" else "pir-json"

    @property
    def directory(self) -> Path:
        return self.program.parent


def _files_in(directory: Path) -> ModelFiles | None:
    for program_name in PROGRAM_NAMES:
        program = directory / program_name
        params = program.with_suffix(".pdiparams")
        if program.is_file() and params.is_file():
            infer_cfg = directory / "infer_cfg.yml"
            manifest = directory / MANIFEST_NAME
            return ModelFiles(program, params, infer_cfg if infer_cfg.is_file() else None,
                              manifest if manifest.is_file() else None)
    return None


def find_model_files(model_dir: str | Path) -> ModelFiles:
    """Find ``inference.json``/``inference.pdmodel`` (or PaddleDetection's ``model.*``) and
    ``.pdiparams`` in ``model_dir`` or its only subdirectory (how archives unpack)."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ModelNotFound(f"model directory {directory} does not exist")
    found = _files_in(directory)
    if found is None:
        subdirs = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
        if len(subdirs) == 1:
            found = _files_in(subdirs[0])
    if found is None:
        raise ModelNotFound(
            f"no inference model in {directory}: expected inference.pdmodel or inference.json "
            "next to inference.pdiparams")
    return found


def program_input_shapes(files: ModelFiles) -> dict[str, list[int]]:
    """Declared input shapes (``-1`` = dynamic) read from the program file itself.

    Paddle Inference reports ``[0]`` for an input's shape until it is fed, so we read the
    ``data`` ops of a PIR ``.json`` or the feed variables of a ``.pdmodel`` protobuf.
    Returns ``{}`` when the file cannot be parsed.
    """
    try:
        if files.program_format == "pir-json":
            return _json_input_shapes(json.loads(files.program.read_text()))
        return _pdmodel_input_shapes(files.program.read_bytes())
    except Exception:  # noqa: BLE001 - shapes are a hint; loading decides validity
        return {}


def _json_input_shapes(program: Mapping[str, Any]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for region in program.get("program", {}).get("regions", []):
        for block in region.get("blocks", []):
            for op in block.get("ops", []):
                if not str(op.get("#", "")).endswith(".data"):
                    continue
                attrs = {a.get("N"): a.get("AT", {}).get("D") for a in op.get("A", [])
                         if isinstance(a, dict)}
                if isinstance(attrs.get("name"), str) and isinstance(attrs.get("shape"), list):
                    shapes[attrs["name"]] = [int(v) for v in attrs["shape"]]
    return shapes


def _pdmodel_input_shapes(data: bytes) -> dict[str, list[int]]:
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(data)
    block = program.blocks[0]
    feeds = [name for op in block.ops if op.type == "feed"
             for slot in op.outputs if slot.parameter == "Out" for name in slot.arguments]
    shapes = {}
    for var in block.vars:
        if var.name in feeds:
            shapes[var.name] = [int(v) for v in var.type.dense_tensor.tensor.dims]
    return shapes


@dataclass(frozen=True)
class InferConfig:
    """The parts of PaddleDetection's ``infer_cfg.yml`` we use."""

    labels: tuple[str, ...]
    preprocess: DetectionPreprocess
    draw_threshold: float
    arch: str

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.target_size


def parse_infer_cfg(path: str | Path) -> InferConfig:
    """Read a detector's ``infer_cfg.yml`` (label list, resize, mean/std, draw_threshold)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not a mapping")
    steps = data.get("Preprocess") or []
    if not isinstance(steps, list):
        raise ModelFormatError(f"{path}: Preprocess must be a list")
    return InferConfig(labels=tuple(str(v) for v in data.get("label_list") or ("foreground",)),
                       preprocess=DetectionPreprocess.from_infer_cfg(steps),
                       draw_threshold=float(data.get("draw_threshold", 0.5)),
                       arch=str(data.get("arch", "")))


def write_infer_cfg(path: str | Path, *, preprocess: DetectionPreprocess,
                    labels: Sequence[str], draw_threshold: float = 0.5,
                    arch: str = "PicoDet") -> None:
    """Write an ``infer_cfg.yml`` in PaddleDetection's export format."""
    interp = {v: k for k, v in {0: "nearest", 1: "bilinear", 2: "bicubic"}.items()}
    config = {
        "mode": "paddle", "draw_threshold": draw_threshold, "metric": "COCO",
        "use_dynamic_shape": False, "arch": arch, "min_subgraph_size": 3,
        "Preprocess": [
            {"type": "Resize", "interp": interp[preprocess.interpolation],
             "keep_ratio": preprocess.keep_ratio, "target_size": list(preprocess.target_size)},
            {"type": "NormalizeImage", "is_scale": preprocess.normalize.scale != 1.0,
             "mean": list(preprocess.normalize.mean), "std": list(preprocess.normalize.std)},
            {"type": "Permute"},
        ],
        "label_list": list(labels),
    }
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))


__all__ = ["PROGRAM_NAMES", "InferConfig", "ModelFiles", "find_model_files", "parse_infer_cfg",
           "program_input_shapes", "write_infer_cfg"]
