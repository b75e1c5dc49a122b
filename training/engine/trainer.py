"""Training loop for the PP-ShiTuV2 feature extractor: PK batches, CE + triplet, cosine LR,
atomic checkpoints with automatic resume, cancel hook, JSON-lines log, export at the end.

A run is a pure function of (config, data): every random draw is derived from
``(seed, step)`` (augmentation per sample, dropout per step) and the PK batches from
``(seed, epoch)``, so a run killed at any moment and restarted with the same command
continues exactly where its last checkpoint left it.

The network and its starting weights are in ``extractor_net``, checkpoints in ``checkpoints``, and
what both trainers share (log, device, seeds, run file names) in ``runs``.
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

from recognition.engine.export import export_inference_model
from recognition.engine.manifest import ModelManifest
from recognition.engine.nets import RecognitionModel

from .augment import TrainAugment
from .checkpoints import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from .dataset import ImageDataset
from .evaluate import evaluate_extractor
from .extractor_net import DEFAULT_DEPTHS, FINAL_WEIGHTS_NAME, ModelExtractor, build_model, load_initial_weights
from .losses import CrossEntropyLabelSmooth, TripletAngularMarginLoss
from .network_files import TRAIN_CONFIG_NAME, TRAIN_WEIGHTS_NAME, network_config
from .runs import (LOG_NAME, MODEL_DIR_NAME, RESULT_NAME, TrainLog, config_values, derived_seed, read_log,
                   select_device, to_jsonable, write_json_atomic)
from .sampler import PKSampler
from .schedule import CosineWarmup, scaled_lr

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
        values = config_values(cls, data, overrides, what="training", aliases=(("P", "p"), ("K", "k")))
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


# --- the loop ------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised from inside evaluation when the cancel hook fires."""


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
    ``status="cancelled"``. ``progress(fraction, info)`` follows every step, eval and export, and precedes
    every checkpoint save.
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
    log = TrainLog(out_dir / LOG_NAME, keep_until_step=step if checkpoint is not None else None)
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

    def report(phase: str, **info: Any) -> None:
        if progress is not None:
            progress(min(1.0, step / last_step) if last_step else 1.0, {"phase": phase, "step": step,
                                                                         "total_steps": last_step, **info})

    def save(at_step: int) -> Path:
        # Reported before the save: whoever records progress never lags the newest checkpoint.
        report("checkpoint")
        return save_checkpoint(out_dir, model=model, optimizer=optimizer, state=state_for(at_step),
                               keep=config.keep_checkpoints)

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
            paddle.seed(derived_seed(config.seed, step, 0xD50))  # dropout masks of this step
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
    write_json_atomic(out_dir / RESULT_NAME, {**result.to_dict(), "config": to_jsonable(config.to_dict())})
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
                  step: int, epoch: int, log: TrainLog, cancel: CancelCallback | None,
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
    from recognition.engine.manifest import read_manifest

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


__all__ = ["TrainConfig", "TrainResult", "export_run", "train"]
