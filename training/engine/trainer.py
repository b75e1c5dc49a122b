"""Training loop for the PP-ShiTuV2 feature extractor: PK batches, CE + triplet, cosine LR,
atomic checkpoints with automatic resume, cancel hook, JSON-lines log, export at the end.

A run is a pure function of (config, data): every random draw is derived from
``(seed, step)`` (augmentation per sample, dropout per step) and the PK batches from
``(seed, epoch)``, so a run killed at any moment and restarted with the same command
continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn

from recognition.engine.models import ModelManifest, export_inference_model
from recognition.engine.nets import BNNeck, FC, ColourHistogram, PPLCNetV2, RecognitionModel, build_recognition_model
from recognition.engine.preprocess import RecognitionPreprocess

from .augment import TrainAugment
from .dataset import ImageDataset
from .evaluate import evaluate_extractor
from .losses import CrossEntropyLabelSmooth, TripletAngularMarginLoss
from .network_files import TRAIN_CONFIG_NAME, TRAIN_WEIGHTS_NAME, network_config
from .sampler import PKSampler
from .schedule import CosineWarmup, scaled_lr

LOG_NAME = "train_log.jsonl"
RESULT_NAME = "result.json"
MODEL_DIR_NAME = "model"
FINAL_WEIGHTS_NAME = "final_weights.pdparams"
DEFAULT_DEPTHS = (2, 2, 6, 2)
# Config fields that change the trajectory: resuming with other values would mix two runs.
_TRAJECTORY_FIELDS = ("epochs", "p", "k", "base_lr", "warmup_epochs", "momentum", "weight_decay",
                      "image_size", "seed", "init_from", "feature_dim", "backbone_scale",
                      "backbone_depths", "label_smoothing", "triplet_margin", "colour_weight", "colour_dim")

ProgressCallback = Callable[[float, dict[str, Any]], None]
CancelCallback = Callable[[], bool]


# --- configuration -------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a training run depends on; PP-ShiTuV2's recipe where it speaks."""

    epochs: int = 100
    p: int = 8                          # identities per batch
    k: int = 4                          # images per identity
    base_lr: float | None = None        # None: 0.06 scaled linearly from a batch of 2048
    warmup_epochs: float = 5.0
    momentum: float = 0.9
    weight_decay: float = 1e-5          # L2, not applied to BN (their ParamAttr says so)
    image_size: int = 224
    threads: int = 2                    # CPU math threads (ignored on GPU)
    seed: int = 0
    checkpoint_every_steps: int = 200
    keep_checkpoints: int = 2
    out_dir: str = "runs/shitu"
    init_from: str | None = None        # .pdparams file or an earlier run's out_dir
    feature_dim: int = 512
    backbone_scale: float = 1.0         # < 1 or shallower depths: a small net for tests/smoke runs
    backbone_depths: tuple[int, ...] = DEFAULT_DEPTHS
    label_smoothing: float = 0.1
    triplet_margin: float = 0.5
    colour_weight: float = 0.0          # > 0: fuse a fixed colour histogram (colour_dim) with the learned features
    colour_dim: int = 256
    eval_every_epochs: int = 1
    eval_mode: str = "leave_one_out"
    eval_batch_size: int = 32
    cache_images_mb: int = 1024         # decoded+resized training images kept in memory
    max_steps: int | None = None        # stop (and export) early; the LR schedule still spans `epochs`
    device: str = "auto"                # auto | cpu | gpu
    model_name: str = "shitu-rec"
    model_version: str = "1"
    write_plots: bool = True

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    @property
    def lr(self) -> float:
        return self.base_lr if self.base_lr is not None else scaled_lr(self.batch_size)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **overrides: Any) -> "TrainConfig":
        """From a YAML/JSON mapping; ``P``/``K`` accepted, unknown keys refused (typos)."""
        values = {str(k): v for k, v in dict(data or {}).items()}
        for alias, name in (("P", "p"), ("K", "k")):
            if alias in values:
                values[name] = values.pop(alias)
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        if "backbone_depths" in values:
            values["backbone_depths"] = tuple(int(v) for v in values["backbone_depths"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backbone_depths"] = list(self.backbone_depths)
        return data


@dataclass
class TrainResult:
    status: str                         # "completed" | "cancelled"
    step: int
    total_steps: int
    epoch: int                          # completed epochs
    out_dir: Path
    model_dir: Path | None = None
    manifest: ModelManifest | None = None
    last_checkpoint: Path | None = None
    resumed_from_step: int | None = None
    final_loss: float | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_NAME

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "step": self.step, "total_steps": self.total_steps,
                "epoch": self.epoch, "out_dir": str(self.out_dir),
                "model_dir": str(self.model_dir) if self.model_dir else None,
                "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                "resumed_from_step": self.resumed_from_step, "final_loss": self.final_loss,
                "evals": self.evals, "seconds": round(self.seconds, 3)}


# --- model ---------------------------------------------------------------------------


def build_model(config: TrainConfig, num_classes: int) -> RecognitionModel:
    """PPLCNetV2_base_ShiTu + BNNeck + FC head; other scales/depths build the same net smaller."""
    depths = tuple(config.backbone_depths)
    colour = ColourHistogram(out_dim=config.colour_dim) if config.colour_weight > 0 else None
    if config.backbone_scale == 1.0 and depths == DEFAULT_DEPTHS and colour is None:
        return build_recognition_model(num_classes=num_classes, feature_dim=config.feature_dim)
    # engine-B's pplcnetv2_base_shitu pins scale/depths, so the ShiTu options are repeated here.
    backbone = PPLCNetV2(scale=config.backbone_scale, depths=depths, class_expand=config.feature_dim,
                         last_stride=1, last_conv_bias=True, last_act=False, with_fc=False)
    return RecognitionModel(backbone, BNNeck(config.feature_dim), FC(config.feature_dim, num_classes),
                            colour=colour, colour_weight=config.colour_weight or 0.5)


def _weights_file(source: Path) -> Path:
    if source.is_file():
        return source
    if (source / FINAL_WEIGHTS_NAME).is_file():
        return source / FINAL_WEIGHTS_NAME
    checkpoint = latest_checkpoint(source)
    if checkpoint is not None:
        return checkpoint.path / MODEL_NAME
    if any((source / name).exists() for name in ("inference.json", "inference.pdmodel")):
        raise ValueError(
            f"{source} is an exported inference model: its re-parameterised program has no "
            "training-time weights. Fine-tune from the training run's folder (or its "
            f"{FINAL_WEIGHTS_NAME}) or from a PaddleClas dygraph .pdparams file.")
    raise FileNotFoundError(f"no weights to start from in {source}")


def load_initial_weights(model: nn.Layer, source: str | Path) -> dict[str, list[str]]:
    """Copy matching weights (same name and shape) into ``model``, never the classifier head.

    Accepts our runs/checkpoints and PaddleClas dygraph ``.pdparams`` (``RecModel`` keys, or a
    bare backbone's keys such as the ImageNet ``PPLCNetV2_base`` weights).
    """
    state = paddle.load(str(_weights_file(Path(source))))
    if not any(key.startswith("backbone.") for key in state):
        state = {f"backbone.{key}": value for key, value in state.items()}
    own = model.state_dict()
    loaded, skipped = {}, []
    for key, value in state.items():
        if key.startswith("head.") or key not in own or list(value.shape) != list(own[key].shape):
            skipped.append(key)
            continue
        loaded[key] = value
    model.set_state_dict({**own, **loaded})  # complete dict: no per-key "skip loading" warnings
    missing = [key for key in own if key not in loaded and not key.startswith("head.")]
    return {"loaded": sorted(loaded), "skipped": sorted(skipped), "missing": sorted(missing)}


class ModelExtractor:
    """The Extractor contract over an in-memory model, so training evaluates with the same code
    (``evaluate_extractor``) and preprocessing as an exported model."""

    def __init__(self, model: RecognitionModel, image_size: int, *, batch_size: int = 32):
        self.model = model
        self.preprocess = RecognitionPreprocess(size=(image_size, image_size))
        self.batch_size = batch_size
        self.feature_dim = (int(model.neck.num_features) if model.neck is not None else 0) + (
            model.colour.out_dim if model.colour is not None else 0)

    def extract(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = []
            with paddle.no_grad():
                for start in range(0, len(crops), self.batch_size):
                    batch = paddle.to_tensor(self.preprocess(crops[start:start + self.batch_size]))
                    chunks.append(self.model(batch).numpy())
        finally:
            if was_training:
                self.model.train()
        feats = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, self.feature_dim), np.float32)
        return (feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# --- checkpoints ---------------------------------------------------------------------

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


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
    _write_json_atomic(tmp / STATE_NAME, state)
    for file in tmp.iterdir():
        with file.open("rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():  # same step saved again (e.g. cancel right after a periodic save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    _write_json_atomic(root / LATEST_NAME, {"name": name, "step": int(state["step"])})
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


def to_jsonable(value: Any) -> Any:
    """Config values (tuples, numpy scalars, paths) as plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# --- the loop ------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised from inside evaluation when the cancel hook fires."""


def select_device(config: TrainConfig) -> str:
    """GPU when Paddle was built with CUDA and one is visible (unless ``device='cpu'``), else CPU
    capped at ``config.threads`` math threads (Paddle 3.3 has no public ``set_num_threads``)."""
    wants_gpu = config.device in ("auto", "gpu")
    if wants_gpu and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_device("gpu:0")
        return "gpu:0"
    if config.device == "gpu":
        raise RuntimeError("device='gpu' but Paddle sees no CUDA GPU")
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(max(1, int(config.threads)))
    return "cpu"


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def _dataset_fingerprint(dataset: ImageDataset) -> dict[str, Any]:
    return {"images": len(dataset), "classes": dataset.num_classes,
            "class_names_sha": _sha(json.dumps(dataset.class_names, ensure_ascii=False)),
            "labels_sha": _sha(",".join(map(str, dataset.labels.tolist())))}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _ImageCache:
    """Decoded images already resized to the training size (the chain's first op, so exact)."""

    def __init__(self, dataset: ImageDataset, size: int, budget_mb: int):
        self.dataset, self.size = dataset, size
        self.budget = int(budget_mb) << 20
        self.used = 0
        self.images: dict[int, np.ndarray] = {}

    def get(self, index: int) -> np.ndarray:
        cached = self.images.get(index)
        if cached is not None:
            return cached
        from recognition.engine.preprocess import resize

        image = resize(self.dataset.load(index), (self.size, self.size), "bilinear")
        if self.used + image.nbytes <= self.budget:
            self.images[index] = image
            self.used += image.nbytes
        return image


class _Log:
    """Append-only JSON lines; on resume, records after the checkpoint's step are dropped."""

    def __init__(self, path: Path, *, keep_until_step: int | None):
        self.path = path
        if keep_until_step is not None and path.exists():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if int(record.get("step", 0)) <= keep_until_step:
                    kept.append(line)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            os.replace(tmp, path)
        elif keep_until_step is None and path.exists():
            path.unlink()
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a training log, skipping a torn last line."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _check_resumable(checkpoint: Checkpoint, config: TrainConfig, fingerprint: dict[str, Any]) -> None:
    changed = _changed_fields(checkpoint.state.get("config", {}), config)
    if changed:
        raise ValueError(f"{checkpoint.path.parent.parent} holds a run with different {changed}; "
                         "use a new out_dir or the original settings")
    if checkpoint.state.get("data") != fingerprint:
        raise ValueError(f"{checkpoint.path.parent.parent} was trained on different data "
                         f"({checkpoint.state.get('data')} vs {fingerprint})")


def _export(model: RecognitionModel, config: TrainConfig, out_dir: Path, *, class_names: Sequence[str],
            step: int, evals: list[dict[str, Any]]) -> tuple[Path, ModelManifest]:
    """Export backbone + neck (no head) into ``out_dir/model`` through a temporary folder."""
    target = out_dir / MODEL_DIR_NAME
    partial = out_dir / f".{MODEL_DIR_NAME}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    extractor_net = RecognitionModel(model.backbone, model.neck, colour=model.colour, colour_weight=model.colour_weight)
    training_info = {"steps": step, "classes": len(class_names), "config": to_jsonable(config.to_dict()),
                     "evals": evals[-5:]}
    manifest = export_inference_model(extractor_net, partial, kind="extractor",
                                      input_size=config.image_size, name=config.model_name,
                                      version=config.model_version, extra={"training": training_info})
    if target.exists():
        shutil.rmtree(target)
    os.rename(partial, target)
    return target, manifest


def train(config: TrainConfig, train_set: ImageDataset,
          eval_sets: Mapping[str, ImageDataset] | ImageDataset | None = None, *,
          progress: ProgressCallback | None = None, cancel: CancelCallback | None = None) -> TrainResult:
    """Train (or resume) the extractor in ``config.out_dir`` and export it to ``out_dir/model``.

    Restarting with the same arguments after a kill resumes from the newest checkpoint; after
    completion it returns the finished result without training again. ``cancel()`` is polled
    between steps and during evaluation: on True the run checkpoints and returns
    ``status="cancelled"``. ``progress(fraction, info)`` follows every step, eval and export.
    """
    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(eval_sets, ImageDataset):
        eval_sets = {"eval": eval_sets}
    eval_sets = dict(eval_sets or {})
    p = min(config.p, train_set.num_classes)
    sampler = PKSampler(train_set.labels, p=p, k=config.k, seed=config.seed)
    steps_per_epoch = len(sampler)
    total_steps = config.epochs * steps_per_epoch
    last_step = min(total_steps, config.max_steps) if config.max_steps else total_steps
    finished = _finished_result(out_dir, config)
    if finished is not None and finished.step >= last_step:
        return finished  # a raised max_steps continues from the last checkpoint instead

    device = select_device(config)
    schedule = CosineWarmup.from_epochs(config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                                        warmup_epochs=config.warmup_epochs)
    fingerprint = _dataset_fingerprint(train_set)

    paddle.seed(config.seed)
    model = build_model(config, train_set.num_classes)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule(0), momentum=config.momentum, parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(config.weight_decay))
    checkpoint = latest_checkpoint(out_dir)
    resumed_from = None
    init_report = None
    if checkpoint is not None:
        _check_resumable(checkpoint, config, fingerprint)
        load_checkpoint(checkpoint, model=model, optimizer=optimizer)
        step = resumed_from = checkpoint.step
    else:
        step = 0
        if config.init_from:
            init_report = load_initial_weights(model, config.init_from)
    log = _Log(out_dir / LOG_NAME, keep_until_step=step if checkpoint is not None else None)
    evals = [r for r in read_log(log.path) if r.get("event") == "eval"] if checkpoint is not None else []
    if checkpoint is None:
        log.write({"event": "start", "step": 0, "device": device, "steps_per_epoch": steps_per_epoch,
                   "total_steps": total_steps, "batch_size": p * config.k, "base_lr": config.lr,
                   "classes": train_set.num_classes, "images": len(train_set),
                   "init_from": config.init_from,
                   "init_loaded": len(init_report["loaded"]) if init_report else None})
    else:
        log.write({"event": "resume", "step": step, "device": device})

    ce_loss = CrossEntropyLabelSmooth(config.label_smoothing)
    triplet_loss = TripletAngularMarginLoss(config.triplet_margin)
    augment = TrainAugment.for_size(config.image_size)
    cache = _ImageCache(train_set, config.image_size, config.cache_images_mb)
    last_loss = None
    epoch_batches: tuple[int, list[list[int]]] | None = None

    def state_for(at_step: int) -> dict[str, Any]:
        return {"step": at_step, "epoch": at_step // steps_per_epoch,
                "step_in_epoch": at_step % steps_per_epoch, "steps_per_epoch": steps_per_epoch,
                "total_steps": total_steps, "config": to_jsonable(config.to_dict()), "data": fingerprint,
                "class_names": train_set.class_names,
                # All randomness is derived from (seed, step) / (seed, epoch): nothing else to store.
                "rng": {"seed": config.seed, "derivation": "SeedSequence([seed, step, sample])"},
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def save(at_step: int) -> Path:
        path = save_checkpoint(out_dir, model=model, optimizer=optimizer, state=state_for(at_step),
                               keep=config.keep_checkpoints)
        return path

    def report(phase: str, **info: Any) -> None:
        if progress is not None:
            progress(min(1.0, step / last_step) if last_step else 1.0, {"phase": phase, "step": step,
                                                                         "total_steps": last_step, **info})

    def cancelled_result() -> TrainResult:
        existing = latest_checkpoint(out_dir)
        path = existing.path if existing is not None and existing.step == step else save(step)
        log.write({"event": "cancelled", "step": step})
        log.close()
        report("cancelled")
        return TrainResult("cancelled", step, total_steps, step // steps_per_epoch, out_dir,
                           last_checkpoint=path, resumed_from_step=resumed_from, final_loss=last_loss,
                           evals=evals, seconds=time.perf_counter() - started)

    model.train()
    try:
        while step < last_step:
            if cancel is not None and cancel():
                return cancelled_result()
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            if epoch_batches is None or epoch_batches[0] != epoch:
                epoch_batches = (epoch, sampler.epoch_batches(epoch))
            indices = epoch_batches[1][step_in_epoch]
            t0 = time.perf_counter()
            images = np.stack([augment(cache.get(i), np.random.default_rng([config.seed, step, slot]))
                               for slot, i in enumerate(indices)])
            labels = paddle.to_tensor(train_set.labels[indices])
            t1 = time.perf_counter()
            paddle.seed(_derived_seed(config.seed, step, 0xD50))  # dropout masks of this step
            lr = schedule(step)
            optimizer.set_lr(lr)
            out = model(paddle.to_tensor(images))
            ce = ce_loss(out["logits"], labels)
            tri = triplet_loss(out.get("fused", out["features"]), labels)
            loss = ce + tri
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            step += 1
            last_loss = float(loss)
            record = {"event": "step", "step": step, "epoch": epoch + 1, "loss": last_loss,
                      "ce": float(ce), "triplet": float(tri), "lr": lr,
                      "step_seconds": round(time.perf_counter() - t0, 4), "data_seconds": round(t1 - t0, 4)}
            if not math.isfinite(last_loss):
                log.write({**record, "event": "diverged"})
                raise FloatingPointError(f"loss became {last_loss} at step {step}; lower base_lr")
            log.write(record)
            report("train", **{k: record[k] for k in ("epoch", "loss", "ce", "triplet", "lr", "step_seconds")})
            epoch_end = step % steps_per_epoch == 0
            if step % max(1, config.checkpoint_every_steps) == 0 or epoch_end or step == last_step:
                save(step)
            if eval_sets and (epoch_end and (epoch + 1) % max(1, config.eval_every_epochs) == 0
                              or step == last_step):
                evals.extend(_evaluate_all(model, config, eval_sets, step=step, epoch=epoch + 1, log=log,
                                           cancel=cancel, report=report))
    except _Cancelled:
        return cancelled_result()
    except BaseException:
        log.close()
        raise

    report("export")
    paddle.save(model.state_dict(), str(out_dir / FINAL_WEIGHTS_NAME))
    model_dir, manifest = _export(model, config, out_dir, class_names=train_set.class_names,
                                  step=step, evals=evals)
    log.write({"event": "exported", "step": step, "model_dir": str(model_dir),
               "version": manifest.version})
    log.close()
    if config.write_plots:
        _write_plots(out_dir)
    result = TrainResult("completed", step, total_steps, step // steps_per_epoch, out_dir,
                         model_dir=model_dir, manifest=manifest, last_checkpoint=latest_checkpoint(out_dir).path,
                         resumed_from_step=resumed_from, final_loss=last_loss, evals=evals,
                         seconds=time.perf_counter() - started)
    _write_json_atomic(out_dir / RESULT_NAME, {**result.to_dict(), "config": to_jsonable(config.to_dict())})
    report("done")
    return result


def export_run(run_dir: str | Path, out_dir: str | Path, *, colour_weight: float | None = None,
               name: str | None = None, version: str | None = None) -> ModelManifest:
    """A finished run as a model folder another process can use and fine-tune: the inference program
    (fused with the colour histogram when ``colour_weight`` > 0), its manifest, the training weights
    without the classifier head, and the network settings that rebuild it (``train_config.json``)."""
    run = Path(run_dir)
    result = json.loads((run / RESULT_NAME).read_text(encoding="utf-8"))
    known = {f.name for f in fields(TrainConfig)}
    overrides = {"colour_weight": colour_weight, "model_name": name, "model_version": version}
    config = TrainConfig.from_mapping({k: v for k, v in result["config"].items() if k in known},
                                      **{k: v for k, v in overrides.items() if v is not None})
    state = paddle.load(str(run / FINAL_WEIGHTS_NAME))
    model = build_model(config, int(state["head.fc.weight"].shape[1]))
    model.set_state_dict({**model.state_dict(), **state})
    extractor_net = RecognitionModel(model.backbone, model.neck, colour=model.colour, colour_weight=model.colour_weight)
    target = Path(out_dir)
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    fusion = {"colour_histogram": {"bins": model.colour.bins, "dim": model.colour.out_dim,
                                   "weight": model.colour_weight}} if model.colour is not None else None
    training_info = {"steps": result.get("step"), "config": to_jsonable(config.to_dict()),
                     "evals": result.get("evals", [])[-5:]}
    manifest = export_inference_model(extractor_net, partial, kind="extractor", input_size=config.image_size,
                                      name=config.model_name, version=config.model_version,
                                      extra={"training": training_info, **({"fusion": fusion} if fusion else {})})
    paddle.save({k: v for k, v in state.items() if not k.startswith("head.")}, str(partial / TRAIN_WEIGHTS_NAME))
    (partial / TRAIN_CONFIG_NAME).write_text(json.dumps(network_config(config)), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    os.rename(partial, target)
    return manifest


def _evaluate_all(model: RecognitionModel, config: TrainConfig, eval_sets: Mapping[str, ImageDataset], *,
                  step: int, epoch: int, log: _Log, cancel: CancelCallback | None,
                  report: Callable[..., None]) -> list[dict[str, Any]]:
    extractor = ModelExtractor(model, config.image_size, batch_size=config.eval_batch_size)

    def on_batch(done: int, total: int) -> None:
        if cancel is not None and cancel():
            raise _Cancelled()

    records = []
    for name, dataset in eval_sets.items():
        report("eval", name=name)
        metrics = evaluate_extractor(extractor, dataset, mode=config.eval_mode,
                                     batch_size=config.eval_batch_size, seed=config.seed, progress=on_batch)
        record = {"event": "eval", "step": step, "epoch": epoch, "name": name, **metrics}
        log.write(record)
        records.append(record)
        report("eval", name=name, **{k: metrics[k] for k in ("recall@1", "mAP")})
    return records


def _changed_fields(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    current = to_jsonable(config.to_dict())
    defaults = to_jsonable(TrainConfig().to_dict())  # a field added since the run started had its default
    return [name for name in _TRAJECTORY_FIELDS if saved.get(name, defaults[name]) != current.get(name)]


def _finished_result(out_dir: Path, config: TrainConfig) -> TrainResult | None:
    """A completed run's result, if its exported model is still there (restart is a no-op)."""
    try:
        data = json.loads((out_dir / RESULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    changed = _changed_fields(data.get("config", {}), config)
    if changed:
        raise ValueError(f"{out_dir} holds a finished run with different {changed}; use a new out_dir")
    model_dir = Path(data["model_dir"]) if data.get("model_dir") else None
    if data.get("status") != "completed" or model_dir is None or not model_dir.is_dir():
        return None
    from recognition.engine.models import read_manifest

    return TrainResult("completed", data["step"], data["total_steps"], data["epoch"], out_dir,
                       model_dir=model_dir, manifest=read_manifest(model_dir),
                       last_checkpoint=Path(data["last_checkpoint"]) if data.get("last_checkpoint") else None,
                       resumed_from_step=data.get("resumed_from_step"), final_loss=data.get("final_loss"),
                       evals=data.get("evals", []), seconds=data.get("seconds", 0.0))


def _write_plots(out_dir: Path) -> None:
    """Loss and recall curves next to the log; a plotting failure must not fail a finished run."""
    try:
        from .plots import plot_training_log

        plot_training_log(out_dir / LOG_NAME, out_dir)
    except Exception as exc:  # noqa: BLE001 - plots are a convenience
        with (out_dir / LOG_NAME).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": "plot_failed", "step": 0, "error": str(exc)}) + "\n")


__all__ = ["FINAL_WEIGHTS_NAME", "LOG_NAME", "MODEL_DIR_NAME", "RESULT_NAME", "Checkpoint", "ModelExtractor",
           "TrainConfig", "TrainResult", "build_model", "latest_checkpoint", "load_checkpoint",
           "load_initial_weights", "read_log", "save_checkpoint", "select_device", "train"]
