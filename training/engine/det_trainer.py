"""Training loop for the PP-PicoDet mainbody detector: SimOTA + VFL/GIoU/DFL, EMA, resumable.

Same run discipline as the extractor's trainer (the shared ``checkpoints`` and ``runs`` modules):
every random draw comes from ``(seed, step)``, checkpoints are atomic, a killed run restarted
with the same command continues from its newest checkpoint, and the finished run exports the
EMA weights to the official inference layout (``model/`` with ``infer_cfg.yml``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from recognition.engine.export import export_inference_model
from recognition.engine.manifest import ModelManifest
from recognition.engine.nets.picodet import PicoDet

from .det_assign import simota_assign
from .det_data import DetectionAugment, DetectionDataset
from .det_eval import evaluate_detector
from .det_losses import distribution_focal_loss, giou_loss, varifocal_loss
from .schedule import CosineWarmup
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .runs import (LOG_NAME, MODEL_DIR_NAME, RESULT_NAME, TrainLog, config_values, derived_seed, read_log,
                   select_device, to_jsonable, write_json_atomic)

EMA_NAME = "ema"
LOSS_CURVES = (("loss", "total"), ("vfl", "varifocal"), ("giou", "GIoU"), ("dfl", "distribution focal"))
METRIC_CURVES = (("mAP@0.5", "mAP@0.5"), ("recall", "recall (top 5, score >= 0.2)"))
_TRAJECTORY_FIELDS = ("epochs", "batch_size", "image_size", "train_sizes", "base_lr", "warmup_steps", "momentum",
                      "weight_decay", "seed", "backbone_scale", "neck_channels", "num_convs", "reg_max",
                      "loss_weights", "ema_decay")


@dataclass
class DetTrainConfig:
    """A detector run. The network is PP-PicoDet (LCNet + CSP-PAN + PicoHead, 4 levels, one class)."""

    epochs: int = 30
    batch_size: int = 16
    image_size: int = 320                   # export / evaluation input (plain resize, as at inference)
    train_sizes: tuple[int, ...] = (256, 288, 320, 352, 384)   # multi-scale training, one size per batch
    base_lr: float = 0.02
    warmup_steps: int = 300                 # linear from 0.1 x base_lr, as PicoDet
    momentum: float = 0.9
    weight_decay: float = 4e-5
    clip_grad_norm: float = 35.0
    ema_decay: float = 0.9998
    backbone_scale: float = 0.75
    neck_channels: int = 96
    num_convs: int = 2
    reg_max: int = 7
    loss_weights: tuple[float, float, float] = (1.0, 2.0, 0.25)   # VFL, GIoU, DFL
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    checkpoint_every_steps: int = 100
    keep_checkpoints: int = 2
    eval_every_epochs: int = 1
    max_steps: int | None = None
    out_dir: str = "runs/detector"
    model_name: str = "shitu-det"
    model_version: str = "1"
    write_plots: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **overrides: Any) -> "DetTrainConfig":
        values = config_values(cls, data, overrides, what="detector")
        for name in ("train_sizes", "loss_weights"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def build_detector(config: DetTrainConfig) -> PicoDet:
    return PicoDet(scale=config.backbone_scale, num_classes=1, neck_channels=config.neck_channels,
                   num_convs=config.num_convs, reg_max=config.reg_max)


def priors(model: PicoDet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Prior centres ``[A, 2]`` and strides ``[A]`` in the order the head's outputs are flattened."""
    centers, strides = [], []
    for stride in model.fpn_stride:
        cells = math.ceil(size / stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)
        centers.append((grid + model.cell_offset) * stride)
        strides.append(np.full(cells * cells, stride, np.float32))
    return np.concatenate(centers), np.concatenate(strides)


def detection_loss(raw: tuple[list[paddle.Tensor], list[paddle.Tensor]], gt_boxes: Sequence[np.ndarray], *,
                   centers: np.ndarray, strides: np.ndarray, reg_max: int,
                   weights: Sequence[float] = (1.0, 2.0, 0.25)) -> dict[str, paddle.Tensor]:
    """PicoDet's loss on one batch: SimOTA assigns priors from the current predictions, then VFL on
    every prior (normalised by positives), GIoU and DFL on positives weighted by their score."""
    cls_list, reg_list = raw
    batch = cls_list[0].shape[0]
    cls = paddle.concat([c.flatten(2).transpose([0, 2, 1]) for c in cls_list], axis=1)[..., 0]       # [B, A]
    reg = paddle.concat([r.flatten(2).transpose([0, 2, 1]) for r in reg_list], axis=1)
    reg = reg.reshape([batch, -1, 4, reg_max + 1])                                                  # [B, A, 4, R+1]
    if cls.shape[1] != len(centers):
        raise ValueError(f"head gives {cls.shape[1]} priors, the grid {len(centers)}")
    project = paddle.arange(reg_max + 1, dtype="float32")
    distances = (paddle.nn.functional.softmax(reg, axis=-1) * project).sum(-1)                      # stride units
    center_t = paddle.to_tensor(centers)
    stride_t = paddle.to_tensor(strides).unsqueeze(-1)
    pred_boxes = paddle.concat([center_t - distances[..., :2] * stride_t,
                                center_t + distances[..., 2:] * stride_t], axis=-1)                 # [B, A, 4]
    scores_np = paddle.nn.functional.sigmoid(cls).numpy()
    boxes_np = pred_boxes.numpy()
    vfl_target = np.zeros(scores_np.shape, np.float32)
    flat_index, matched_boxes = [], []
    for b in range(batch):
        assignment = simota_assign(scores_np[b], boxes_np[b], centers, strides, gt_boxes[b])
        positives = assignment.positives
        vfl_target[b, positives] = assignment.iou[positives]
        flat_index.append(b * len(centers) + positives)
        matched_boxes.append(gt_boxes[b][assignment.gt_index[positives]])
    flat_index = np.concatenate(flat_index).astype(np.int64)
    num_pos = max(1, flat_index.size)
    vfl = varifocal_loss(cls, paddle.to_tensor(vfl_target)) / num_pos
    if flat_index.size == 0:
        zero = (pred_boxes.sum() + reg.sum()) * 0.0  # keeps every output in the graph
        return {"loss": weights[0] * vfl + zero, "vfl": vfl, "giou": zero, "dfl": zero, "positives": 0}
    index = paddle.to_tensor(flat_index)
    target_boxes = paddle.to_tensor(np.concatenate(matched_boxes).astype(np.float32))
    pos_boxes = paddle.gather(pred_boxes.reshape([-1, 4]), index)
    pos_reg = paddle.gather(reg.reshape([-1, 4, reg_max + 1]), index)
    weight = paddle.gather(paddle.nn.functional.sigmoid(cls).reshape([-1]), index).detach()
    weight_sum = weight.sum() + 1e-9
    giou = (giou_loss(pos_boxes, target_boxes) * weight).sum() / weight_sum
    pos_centers = paddle.to_tensor(np.tile(centers, (batch, 1))[flat_index])
    pos_strides = paddle.to_tensor(np.tile(strides, batch)[flat_index]).unsqueeze(-1)
    sides = paddle.concat([pos_centers - target_boxes[:, :2], target_boxes[:, 2:] - pos_centers], axis=-1)
    sides = (sides / pos_strides).clip(0, reg_max - 0.01)
    dfl = distribution_focal_loss(pos_reg.reshape([-1, reg_max + 1]), sides.reshape([-1])).reshape([-1, 4]).mean(-1)
    dfl = (dfl * weight).sum() / weight_sum
    loss = weights[0] * vfl + weights[1] * giou + weights[2] * dfl
    return {"loss": loss, "vfl": vfl, "giou": giou, "dfl": dfl, "positives": int(flat_index.size)}


class ModelEMA:
    """Exponential moving average of the weights (and BN statistics), warmed up so early steps count."""

    def __init__(self, model: paddle.nn.Layer, decay: float, state: Mapping[str, Any] | None = None):
        self.decay = decay
        source = state if state is not None else model.state_dict()
        self.shadow = {k: paddle.to_tensor(v).detach().clone() for k, v in source.items()}

    def update(self, model: paddle.nn.Layer, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with paddle.no_grad():
            for key, value in model.state_dict().items():
                shadow = self.shadow[key]
                if paddle.is_floating_point(value):
                    shadow.set_value(shadow * decay + value.detach() * (1 - decay))
                else:
                    shadow.set_value(value.detach())

    def state_dict(self) -> dict[str, paddle.Tensor]:
        return dict(self.shadow)


def _batch(dataset: DetectionDataset, indices: Sequence[int], size: int, augment: DetectionAugment,
           seed: int, step: int) -> tuple[np.ndarray, list[np.ndarray]]:
    images, boxes = [], []
    for slot, index in enumerate(indices):
        image, sample_boxes = dataset.load(int(index))
        tensor, scaled = augment(image, sample_boxes, size, np.random.default_rng([seed, step, slot]))
        images.append(tensor)
        boxes.append(scaled)
    return np.stack(images), boxes


def _epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xE90C, epoch]).permutation(count)


def _eval_samples(dataset: DetectionDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [dataset.load(i) for i in range(len(dataset))]


def dygraph_detect(model: PicoDet, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The model in eval mode as a ``det_eval`` detector (same resize and NMS as the exported program)."""
    from recognition.engine.preprocess import DetectionPreprocess

    preprocess = DetectionPreprocess(target_size=(size, size))

    def detect(image: np.ndarray) -> np.ndarray:
        inputs = preprocess(image)
        with paddle.no_grad():
            bbox, bbox_num = model(paddle.to_tensor(inputs.image), paddle.to_tensor(inputs.im_shape),
                                   paddle.to_tensor(inputs.scale_factor))
        rows = bbox.numpy()[: int(bbox_num.numpy()[0])]
        return rows[:, 1:6] if len(rows) else np.zeros((0, 5), np.float32)

    return detect


def _check_resumable(state: Mapping[str, Any], config: DetTrainConfig, fingerprint: Mapping[str, Any]) -> None:
    saved = state.get("config", {})
    current = config.to_dict()
    changed = [name for name in _TRAJECTORY_FIELDS if saved.get(name) != current.get(name)]
    if changed:
        raise ValueError(f"{config.out_dir} holds a detector run with different {changed}; use a new out_dir")
    if state.get("data") != dict(fingerprint):
        raise ValueError(f"{config.out_dir} was trained on different data ({state.get('data')} vs {fingerprint})")


def train_detector(config: DetTrainConfig, train_set: DetectionDataset, eval_set: DetectionDataset | None = None, *,
                   progress: Callable[[float, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume) the detector in ``config.out_dir``; returns the result written to ``result.json``."""
    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = max(1, len(train_set) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    last_step = min(total_steps, config.max_steps) if config.max_steps else total_steps
    result_path = out_dir / RESULT_NAME
    if result_path.exists():
        finished = json.loads(result_path.read_text(encoding="utf-8"))
        if finished.get("step", 0) >= last_step:
            return finished
    device = select_device(config)
    schedule = CosineWarmup(base_lr=config.base_lr, total_steps=total_steps, warmup_steps=config.warmup_steps,
                            warmup_start_lr=0.1 * config.base_lr)
    paddle.seed(config.seed)
    model = build_detector(config)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule(0), momentum=config.momentum, parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(config.weight_decay),
        grad_clip=paddle.nn.ClipGradByGlobalNorm(config.clip_grad_norm))
    fingerprint = train_set.fingerprint
    checkpoint = latest_checkpoint(out_dir)
    ema_state = None
    if checkpoint is not None:
        _check_resumable(checkpoint.state, config, fingerprint)
        load_checkpoint(checkpoint, model=model, optimizer=optimizer)
        ema_file = checkpoint.path / f"{EMA_NAME}.pdparams"
        ema_state = paddle.load(str(ema_file)) if ema_file.exists() else None
        step = checkpoint.step
    else:
        step = 0
    ema = ModelEMA(model, config.ema_decay, ema_state)
    log = TrainLog(out_dir / LOG_NAME, keep_until_step=step if checkpoint is not None else None)
    evals = [r for r in read_log(log.path) if r.get("event") == "eval"] if checkpoint is not None else []
    log.write({"event": "resume" if checkpoint is not None else "start", "step": step, "device": device,
               "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "images": len(train_set)})
    augment = DetectionAugment()
    prior_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    eval_samples = _eval_samples(eval_set) if eval_set is not None else None

    def report(phase: str, **info: Any) -> None:
        if progress is not None:
            progress(min(1.0, step / last_step), {"phase": phase, "step": step, "total_steps": last_step, **info})

    def save() -> None:
        report("checkpoint")  # before the save, as in trainer.py: whoever records progress never lags a checkpoint
        state = {"step": step, "epoch": step // steps_per_epoch, "config": config.to_dict(), "data": fingerprint}
        save_checkpoint(out_dir, model=model, optimizer=optimizer, state=state, keep=config.keep_checkpoints,
                        extra_weights={EMA_NAME: ema.state_dict()})

    def evaluate(epoch: int) -> None:
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        model.set_state_dict(ema.state_dict())
        model.eval()
        report("eval", epoch=epoch)
        metrics = evaluate_detector(dygraph_detect(model, config.image_size), eval_samples)
        model.set_state_dict(weights)
        model.train()
        record = {"event": "eval", "name": "held-out composites", "step": step, "epoch": epoch, **metrics}
        evals.append(record)
        log.write(record)

    model.train()
    try:
        while step < last_step:
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            order = _epoch_order(len(train_set), config.seed, epoch)
            indices = order[step_in_epoch * config.batch_size:(step_in_epoch + 1) * config.batch_size]
            size_rng = np.random.default_rng([config.seed, 0x512E, step])
            size = int(config.train_sizes[int(size_rng.integers(len(config.train_sizes)))])
            if size not in prior_cache:
                prior_cache[size] = priors(model, size)
            centers, strides = prior_cache[size]
            t0 = time.perf_counter()
            images, boxes = _batch(train_set, indices, size, augment, config.seed, step)
            t1 = time.perf_counter()
            paddle.seed(derived_seed(config.seed, step, 0xD57))
            lr = schedule(step)
            optimizer.set_lr(lr)
            losses = detection_loss(model(paddle.to_tensor(images)), boxes, centers=centers, strides=strides,
                                    reg_max=config.reg_max, weights=config.loss_weights)
            losses["loss"].backward()
            optimizer.step()
            optimizer.clear_grad()
            ema.update(model, step)
            step += 1
            record = {"event": "step", "step": step, "epoch": epoch + 1, "size": size, "lr": lr,
                      "positives": losses["positives"], **{k: float(losses[k]) for k in ("loss", "vfl", "giou", "dfl")},
                      "step_seconds": round(time.perf_counter() - t0, 4), "data_seconds": round(t1 - t0, 4)}
            if not math.isfinite(record["loss"]):
                log.write({**record, "event": "diverged"})
                raise FloatingPointError(f"detector loss became {record['loss']} at step {step}; lower base_lr")
            log.write(record)
            report("train", epoch=epoch + 1, loss=record["loss"], lr=lr)
            epoch_end = step % steps_per_epoch == 0
            if step % max(1, config.checkpoint_every_steps) == 0 or epoch_end or step == last_step:
                save()
            if eval_samples and ((epoch_end and (epoch + 1) % max(1, config.eval_every_epochs) == 0)
                                 or step == last_step):
                evaluate(epoch + 1)
    finally:
        log.close()
    model.set_state_dict(ema.state_dict())
    manifest = export_detector(model, out_dir, image_size=config.image_size, name=config.model_name,
                               version=config.model_version,
                               extra={"training": {"steps": step, "config": config.to_dict(), "evals": evals[-3:]}})
    result = {"status": "completed", "step": step, "total_steps": total_steps, "model_dir": str(out_dir / MODEL_DIR_NAME),
              "version": manifest.version, "evals": evals[-3:], "seconds": round(time.perf_counter() - started, 1),
              "config": config.to_dict()}
    if config.write_plots:
        from .plots import plot_training_log

        plot_training_log(out_dir / LOG_NAME, out_dir, curves=LOSS_CURVES, metrics=METRIC_CURVES)
    write_json_atomic(result_path, result)
    report("done")
    return result


def export_detector(model: PicoDet, out_dir: Path, *, image_size: int, name: str, version: str,
                    extra: dict[str, Any]) -> ModelManifest:
    """Export a trained detector to ``out_dir/model``, replacing it only once the new folder is complete."""
    target = out_dir / MODEL_DIR_NAME
    partial = out_dir / f".{MODEL_DIR_NAME}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    manifest = export_inference_model(model, partial, kind="detector", input_size=image_size, name=name,
                                      version=version, extra=extra)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return manifest


__all__ = ["DetTrainConfig", "ModelEMA", "build_detector", "detection_loss", "dygraph_detect", "export_detector", "priors",
           "train_detector"]
