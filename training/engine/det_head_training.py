"""Train PP-PicoDet's neck and head on cached maps of a frozen ImageNet backbone.

Why: the detector trained from random weights on synthetic composites picks a neighbour or a fragment on a
real shelf. An ImageNet-started EfficientNet-Lite already tells objects from background, and with its
weights frozen its maps (strides 16 and 32 by default) can be computed once per training view (by Paddle Inference). The
CSP-PAN neck and PicoHead then learn from them with the detector's own losses (SimOTA, VFL + GIoU + DFL,
EMA) in minutes on a CPU, where a full backward pass through the backbone costs hours. Views are the plain
image, its mirror and random crops (with their own mirrors), all resized plainly to the export size, as at
inference. The finished run exports the whole detector (backbone included) in the official layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn

from recognition.engine.model_files import find_model_files
from recognition.engine.nets.lite_det import LiteDetBackbone
from recognition.engine.nets.picodet import PicoDet
from recognition.engine.preprocess import Normalize, resize

from .det_data import DetectionDataset, mirror, random_crop
from .det_trainer import ModelEMA, detection_loss, dygraph_detect, export_detector, priors
from .pretrained import pretrained_backbone, source
from .runs import config_values, to_jsonable, write_json_atomic
from .schedule import CosineWarmup

Progress = Callable[[float, dict[str, Any]], None]
ARCHITECTURE = "picodet-efficientnet-lite"


@dataclass
class DetHeadConfig:
    """A frozen-backbone detector run: what the cache depends on, and how the neck and head learn."""

    backbone: str = "efficientnet-lite0"
    image_size: int = 320
    views: int = 4                 # view 0: plain, 1: mirrored, 2+: random crops (mirrored half the time)
    strides: tuple[int, ...] = (16, 32)   # backbone maps fed to the neck; the neck adds one level at 2x the last
    neck_channels: int = 96
    num_convs: int = 2
    reg_max: int = 7
    epochs: int = 8
    batch_size: int = 16
    base_lr: float = 0.04
    warmup_steps: int = 100
    momentum: float = 0.9
    weight_decay: float = 4e-5
    clip_grad_norm: float = 35.0
    ema_decay: float = 0.999
    loss_weights: tuple[float, float, float] = (1.0, 2.0, 0.25)
    seed: int = 0
    threads: int = 2
    max_steps: int | None = None
    model_name: str = "shitu-det-lite0"
    model_version: str = "1"

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, **overrides: Any) -> "DetHeadConfig":
        values = config_values(cls, data, overrides, what="detector head")
        for name in ("loss_weights", "strides"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def build_lite_detector(config: DetHeadConfig) -> PicoDet:
    """PicoDet on an ImageNet-initialised EfficientNet-Lite backbone."""
    features = pretrained_backbone(config.backbone)
    strides = tuple(config.strides)
    return PicoDet(num_classes=1, neck_channels=config.neck_channels, num_convs=config.num_convs,
                   reg_max=config.reg_max, num_features=len(strides) + 1, fpn_stride=strides + (2 * strides[-1],),
                   backbone=LiteDetBackbone(features, strides))


def view(image: np.ndarray, boxes: np.ndarray, index: int, view_no: int,
         config: DetHeadConfig) -> tuple[np.ndarray, np.ndarray]:
    """View ``view_no`` of a sample as ``(size x size x 3 uint8, boxes in its pixels)``; seeded by (seed, index, view)."""
    size = config.image_size
    flip = view_no == 1
    if view_no >= 2:
        rng = np.random.default_rng([config.seed, index, view_no])
        image, boxes = random_crop(image, boxes, rng)
        flip = bool(rng.random() < 0.5)
    boxes = boxes.astype(np.float32)
    if flip:
        image, boxes = mirror(image, boxes)
    height, width = image.shape[:2]
    resized = resize(np.ascontiguousarray(image), (size, size), "bilinear")
    scale = np.array([size / width, size / height, size / width, size / height], np.float32)
    return resized, boxes * scale


def _fingerprint(datasets: Sequence[DetectionDataset], config: DetHeadConfig) -> str:
    digest = hashlib.sha256()
    for dataset in datasets:
        for sample in dataset.samples:
            digest.update(f"{sample.path}\t{sample.boxes.round(1).tolist()}\n".encode())
    key = {k: getattr(config, k) for k in ("backbone", "image_size", "views", "seed", "strides")}
    digest.update(json.dumps(key, sort_keys=True).encode())
    digest.update(source(config.backbone).sha256.encode())
    return digest.hexdigest()[:20]


class _Frozen(nn.Layer):
    """The backbone alone, exported so Paddle Inference computes the maps (several times faster than dygraph)."""

    def __init__(self, backbone: LiteDetBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


@dataclass
class FeatureCache:
    """Backbone maps per level ``[samples, C, H, W]`` (float16) and the boxes of each sample, in input pixels."""

    levels: list[np.ndarray]
    boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.boxes)


def cache_maps(datasets: Sequence[DetectionDataset], config: DetHeadConfig, cache_dir: str | Path, *,
               model: PicoDet | None = None, progress: Progress | None = None, chunk: int = 64) -> FeatureCache:
    """Frozen backbone maps of every view of every sample, computed once per data + settings.

    Work is saved chunk by chunk, so a killed run resumes where it stopped.
    """
    from paddle.static import InputSpec

    from recognition.engine.inference import PredictorRunner

    root = Path(cache_dir) / f"det-maps-{_fingerprint(datasets, config)}"
    root.mkdir(parents=True, exist_ok=True)
    items = [(dataset, i) for dataset in datasets for i in range(len(dataset))]
    normalize = Normalize()
    runner = None
    levels: list[list[np.ndarray]] = []
    all_boxes: list[np.ndarray] = []
    size = config.image_size
    with tempfile.TemporaryDirectory(prefix="det-frozen-") as tmp:
        for start in range(0, len(items), chunk):
            path = root / f"chunk-{start:06d}.npz"
            if not path.is_file():
                if runner is None:
                    model = model or build_lite_detector(config)
                    frozen = _Frozen(model.backbone)
                    frozen.eval()
                    paddle.jit.save(frozen, str(Path(tmp) / "inference"),
                                    input_spec=[InputSpec([None, 3, size, size], "float32", "x")])
                    runner = PredictorRunner(find_model_files(Path(tmp)), threads=config.threads)
                maps: list[list[np.ndarray]] = []
                boxes_out: list[np.ndarray] = []
                for offset, (dataset, i) in enumerate(items[start:start + chunk]):
                    image, boxes = dataset.load(i)
                    batch, batch_boxes = [], []
                    for v in range(config.views):
                        pixels, scaled = view(image, boxes, start + offset, v, config)
                        batch.append(normalize.to_chw(pixels))
                        batch_boxes.append(scaled)
                    outs = runner.run({runner.input_names[0]: np.stack(batch)})
                    maps.append([o.astype(np.float16) for o in outs])
                    boxes_out.extend(batch_boxes)
                arrays = {f"level{k}": np.concatenate([m[k] for m in maps]) for k in range(len(maps[0]))}
                counts = np.array([len(b) for b in boxes_out], np.int64)
                flat = np.concatenate(boxes_out) if boxes_out else np.zeros((0, 4), np.float32)
                tmp_path = path.with_suffix(".tmp.npz")
                np.savez(tmp_path, counts=counts, boxes=flat.reshape(-1, 4), **arrays)
                os.replace(tmp_path, path)
            with np.load(path) as data:
                names = sorted(k for k in data.files if k.startswith("level"))
                if not levels:
                    levels = [[] for _ in names]
                for k, name in enumerate(names):
                    levels[k].append(data[name])
                all_boxes.extend(np.split(data["boxes"], np.cumsum(data["counts"])[:-1]))
            if progress is not None:
                done = min(len(items), start + chunk)
                progress(done / len(items), {"phase": "features", "images": done, "total": len(items)})
    return FeatureCache([np.concatenate(parts) for parts in levels], all_boxes)


class _Top(nn.Layer):
    """Cached maps -> neck -> head (the part that learns)."""

    def __init__(self, model: PicoDet):
        super().__init__()
        self.neck = model.neck
        self.head = model.head

    def forward(self, maps):
        return self.head(self.neck(maps))


def train_det_head(cache: FeatureCache, config: DetHeadConfig, out_dir: str | Path, *,
                   model: PicoDet | None = None, eval_samples: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Train neck + head on ``cache``; exports the whole detector (EMA weights) to ``out_dir/model``."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paddle.set_device("cpu")
    paddle.seed(config.seed)
    model = model or build_lite_detector(config)
    top = _Top(model)
    count = len(cache)
    steps_per_epoch = max(1, count // config.batch_size)
    total = config.epochs * steps_per_epoch
    last = min(total, config.max_steps) if config.max_steps else total
    schedule = CosineWarmup(base_lr=config.base_lr, total_steps=total, warmup_steps=min(config.warmup_steps, total),
                            warmup_start_lr=0.1 * config.base_lr)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule(0), momentum=config.momentum, parameters=top.parameters(),
        weight_decay=paddle.regularizer.L2Decay(config.weight_decay),
        grad_clip=paddle.nn.ClipGradByGlobalNorm(config.clip_grad_norm))
    ema = ModelEMA(top, config.ema_decay)
    centers, strides = priors(model, config.image_size)
    log_path = out / "train_log.jsonl"
    losses_seen: list[dict[str, float]] = []
    top.train()
    step = 0
    with log_path.open("w", encoding="utf-8") as log:
        while step < last:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            order = np.random.default_rng([config.seed, 0xDE7, epoch]).permutation(count)
            picks = order[in_epoch * config.batch_size:(in_epoch + 1) * config.batch_size]
            maps = [paddle.to_tensor(level[picks].astype(np.float32)) for level in cache.levels]
            lr = schedule(step)
            optimizer.set_lr(lr)
            losses = detection_loss(top(maps), [cache.boxes[i] for i in picks], centers=centers, strides=strides,
                                    reg_max=config.reg_max, weights=config.loss_weights)
            losses["loss"].backward()
            optimizer.step()
            optimizer.clear_grad()
            ema.update(top, step)
            step += 1
            record = {"step": step, "epoch": epoch + 1, "lr": lr, "positives": losses["positives"],
                      **{k: float(losses[k]) for k in ("loss", "vfl", "giou", "dfl")}}
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"detector loss became {record['loss']} at step {step}; lower base_lr")
            log.write(json.dumps(record) + "\n")
            losses_seen.append(record)
            if progress is not None:
                progress(step / last, {"phase": "train", "step": step, "total_steps": last, "loss": record["loss"], "lr": lr})
    top.set_state_dict(ema.state_dict())
    model.eval()
    metrics = None
    if eval_samples:
        from .det_eval import evaluate_detector

        metrics = evaluate_detector(dygraph_detect(model, config.image_size), eval_samples)
    manifest = export_detector(model, out, image_size=config.image_size, name=config.model_name,
                               version=config.model_version,
                               extra={"architecture": ARCHITECTURE, "pretrained": source(config.backbone).provenance(),
                                      "training": {"steps": step, "config": config.to_dict(), "eval": metrics}})
    result = {"status": "completed", "step": step, "total_steps": total, "model_dir": str(out / "model"),
              "version": manifest.version, "eval": metrics, "seconds": round(time.perf_counter() - started, 1),
              "samples": count, "config": config.to_dict(),
              "final_loss": float(np.mean([r["loss"] for r in losses_seen[-50:]])) if losses_seen else None}
    write_json_atomic(out / "result.json", result)
    return result


__all__ = ["ARCHITECTURE", "DetHeadConfig", "FeatureCache", "build_lite_detector", "cache_maps", "train_det_head",
           "view"]
