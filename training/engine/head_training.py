"""Train the top of an ImageNet-started extractor on cached backbone features.

Why: on a 2-core CPU a full backward pass through EfficientNet-Lite costs hours, but a frozen
backbone's outputs can be computed once (several augmented views per image, by Paddle
Inference) and the trainable top -- optionally the last blocks, then GeM, the 512-d embedding,
BNNeck and the FC head -- learns from them in minutes with the PP-ShiTuV2 losses (CE with label
smoothing + TripletAngularMargin on PK batches). The shipped default is trained this way, and a
tenant's fast fine-tune is the same code on the tenant's gallery.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn

from recognition.engine.export import export_inference_model
from recognition.engine.manifest import ModelManifest
from recognition.engine.model_files import find_model_files
from recognition.engine.nets import BNNeck, FC, RecognitionModel
from recognition.engine.nets.efficientnet_lite import EfficientNetLite, EfficientNetLiteShiTu
from recognition.engine.preprocess import Normalize, resize

from .dataset import ImageDataset
from .losses import CrossEntropyLabelSmooth, TripletAngularMarginLoss
from .network_files import HEAD_ARCHITECTURE, TRAIN_CONFIG_NAME, TRAIN_WEIGHTS_NAME
from .pretrained import pretrained_backbone, source
from .runs import config_values
from .sampler import PKSampler
from .schedule import CosineWarmup
from .shelf_views import partial_view, shelf_view

ARCHITECTURE = HEAD_ARCHITECTURE
Progress = Callable[[float, dict[str, Any]], None]


@dataclass
class HeadTrainConfig:
    """What a head training depends on; ``train_from`` None keeps the whole backbone frozen."""

    backbone: str = "efficientnet-lite0"
    image_size: int = 224
    feature_dim: int = 512
    gem_p: float = 3.0
    train_from: int | None = None   # first trainable block (its input is cached); None: head only
    views: int = 8                  # views per image; view 0 is the plain photo
    shelf_prob: float = 0.5         # share of the other views set among other products
    plain_share: float = 0.5        # share of training samples drawn as the plain photo (view 0)
    epochs: int = 40
    p: int = 16
    k: int = 4
    lr: float = 0.02
    warmup_epochs: float = 2.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    triplet_margin: float = 0.5
    seed: int = 0
    threads: int = 2
    model_name: str = "shitu-rec-lite0"
    model_version: str = "1"

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, **overrides: Any) -> "HeadTrainConfig":
        return cls(**config_values(cls, data, overrides, what="head-training", aliases=(("P", "p"), ("K", "k"))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def network(self) -> dict[str, Any]:
        """What ``build_network`` needs to rebuild the model (stored as ``train_config.json``)."""
        return {"architecture": ARCHITECTURE, "backbone": self.backbone, "image_size": self.image_size,
                "feature_dim": self.feature_dim, "gem_p": self.gem_p, "train_from": self.train_from}


def build_network(network: dict[str, Any], *, num_classes: int | None = None) -> RecognitionModel:
    """ImageNet backbone + GeM + embedding + BNNeck (+ FC head when ``num_classes``)."""
    shitu = EfficientNetLiteShiTu(pretrained_backbone(network["backbone"]), feature_dim=int(network["feature_dim"]),
                                  gem_p=float(network.get("gem_p", 3.0)))
    head = FC(int(network["feature_dim"]), num_classes) if num_classes else None
    return RecognitionModel(shitu, BNNeck(int(network["feature_dim"])), head)


def trainable_prefixes(model: RecognitionModel, network: dict[str, Any]) -> tuple[str, ...]:
    """State-dict prefixes of ``model`` that training changes; the rest is the pinned ImageNet checkpoint."""
    prefixes = ["backbone.embedding.", "neck."]
    start = network.get("train_from")
    if start is not None:
        count = len(model.backbone.features.blocks)
        prefixes += [f"backbone.features.blocks.{i}." for i in range(int(start), count)]
        prefixes.append("backbone.features.head.")
    return tuple(prefixes)


# --- the frozen part, run by Paddle Inference ---------------------------------------------


class _FrozenPart(nn.Layer):
    def __init__(self, features: EfficientNetLite, pool: nn.Layer, train_from: int | None):
        super().__init__()
        self.features = features
        self.pool = pool
        self.train_from = train_from

    def forward(self, x):
        if self.train_from is None:
            return self.pool(self.features(x))
        return self.features.forward_to(x, self.train_from)


def _frozen_runner(model: RecognitionModel, config: HeadTrainConfig, workdir: Path):
    from recognition.engine.inference import PredictorRunner

    part = _FrozenPart(model.backbone.features, model.backbone.pool, config.train_from)
    part.eval()
    from paddle.static import InputSpec

    size = config.image_size
    paddle.jit.save(part, str(workdir / "inference"),
                    input_spec=[InputSpec([None, 3, size, size], "float32", "x")])
    runner = PredictorRunner(find_model_files(workdir), threads=config.threads)
    return runner


def view_image(dataset: ImageDataset, index: int, view: int, config: HeadTrainConfig,
               others: Sequence[int], loaded: Callable[[int], np.ndarray]) -> np.ndarray:
    """View ``view`` of image ``index`` as ``size x size x 3`` uint8 (view 0: the plain photo)."""
    size = config.image_size
    image = loaded(index)
    if view == 0:
        return resize(image, (size, size), "bilinear")
    rng = np.random.default_rng([config.seed, index, view])
    if rng.random() < config.shelf_prob and len(others):
        return resize(shelf_view(image, size, rng, lambda: loaded(int(others[rng.integers(len(others))]))),
                      (size, size), "bilinear")
    return partial_view(image, size, rng)


def _fingerprint(dataset: ImageDataset, config: HeadTrainConfig) -> str:
    digest = hashlib.sha256()
    for sample in dataset.samples:
        digest.update(f"{sample.source if not isinstance(sample.source, (bytes, bytearray)) else hashlib.sha256(sample.source).hexdigest()}"
                      f"\t{sample.label}\t{sample.bbox}\n".encode("utf-8", "surrogatepass"))
    key = {k: getattr(config, k) for k in ("backbone", "image_size", "gem_p", "train_from", "views",
                                           "shelf_prob", "seed")}
    digest.update(json.dumps(key, sort_keys=True).encode())
    digest.update(source(config.backbone).sha256.encode())
    return digest.hexdigest()[:20]


def cache_features(dataset: ImageDataset, config: HeadTrainConfig, cache_dir: str | Path, *,
                   model: RecognitionModel | None = None, progress: Progress | None = None,
                   cancel: Callable[[], bool] | None = None, chunk: int = 32) -> np.ndarray:
    """Frozen outputs ``[images, views, ...]`` (float16), computed once per data + settings.

    Work is saved chunk by chunk, so a killed run resumes where it stopped.
    """
    root = Path(cache_dir) / f"features-{_fingerprint(dataset, config)}"
    final = root / "features.npy"
    if final.is_file():
        return np.load(final, mmap_mode="r")
    root.mkdir(parents=True, exist_ok=True)
    model = model or build_network(config.network())
    labels = np.asarray(dataset.labels)
    memo: dict[int, np.ndarray] = {}

    def loaded(i: int) -> np.ndarray:
        if i not in memo:
            image = dataset.load(i)
            h, w = image.shape[:2]
            scale = 2 * config.image_size / max(h, w)
            memo[i] = resize(image, (max(1, round(h * scale)), max(1, round(w * scale))), "bilinear") \
                if scale < 1 else image
        return memo[i]

    normalize = Normalize()
    chunks = []
    with tempfile.TemporaryDirectory(prefix="frozen-") as tmp:
        runner = None
        for start in range(0, len(dataset), chunk):
            path = root / f"chunk-{start:06d}.npy"
            if path.is_file():
                chunks.append(np.load(path))
                continue
            if cancel is not None and cancel():
                raise InterruptedError("cancelled while caching features")
            if runner is None:
                runner = _frozen_runner(model, config, Path(tmp))
            rows = []
            for index in range(start, min(start + chunk, len(dataset))):
                others = np.flatnonzero(labels != labels[index])
                batch = np.stack([normalize.to_chw(view_image(dataset, index, v, config, others, loaded))
                                  for v in range(config.views)])
                rows.append(runner.run({runner.input_names[0]: batch})[0].astype(np.float16))
            block = np.stack(rows)
            np.save(path.with_suffix(".tmp.npy"), block)
            os.replace(path.with_suffix(".tmp.npy"), path)
            chunks.append(block)
            memo.clear()
            if progress is not None:
                progress(min(1.0, (start + len(rows)) / len(dataset)),
                         {"phase": "features", "images": start + len(rows), "total": len(dataset)})
    features = np.concatenate(chunks, axis=0)
    np.save(root / "features.tmp.npy", features)
    os.replace(root / "features.tmp.npy", final)
    for path in root.glob("chunk-*.npy"):
        path.unlink()
    return features


# --- the trainable top ----------------------------------------------------------------------


class _Top(nn.Layer):
    """Cached frozen output -> (blocks[train_from:] + head conv + GeM) -> embedding -> BNNeck."""

    def __init__(self, model: RecognitionModel, train_from: int | None):
        super().__init__()
        self.model = model
        self.train_from = train_from

    def forward(self, x):
        shitu = self.model.backbone
        if self.train_from is not None:
            x = shitu.pool(shitu.features.forward_from(x, self.train_from))
        features = self.model.neck(shitu.embedding(x))
        logits = self.model.head(features) if self.model.head is not None else None
        return features, logits


def _set_train_mode(model: RecognitionModel) -> None:
    """BatchNorm statistics of the backbone stay ImageNet's; the embedding's BNNeck learns."""
    model.eval()
    model.neck.train()
    if model.head is not None:
        model.head.train()


def _trainable_parameters(model: RecognitionModel, network: dict[str, Any]) -> list:
    prefixes = trainable_prefixes(model, network) + ("head.",)
    params = []
    for name, param in model.named_parameters():
        keep = name.startswith(prefixes)
        param.stop_gradient = not keep
        if keep:
            params.append(param)
    return params


@dataclass
class HeadTrainResult:
    model: RecognitionModel
    config: HeadTrainConfig
    log: list[dict[str, Any]]
    seconds: float
    cache_seconds: float


def train_head(dataset: ImageDataset, config: HeadTrainConfig, *, cache_dir: str | Path,
               progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
               eval_fn: Callable[[RecognitionModel, int], dict[str, Any]] | None = None,
               eval_every: int = 0, features: np.ndarray | None = None,
               init_from: str | Path | None = None) -> HeadTrainResult:
    """Cache the frozen outputs (unless given), then train the top with CE + triplet on PK batches of views."""
    started = time.perf_counter()
    paddle.seed(config.seed)
    network = config.network()
    model = build_network(network, num_classes=dataset.num_classes)
    if init_from is not None:
        _load_trained(model, Path(init_from))
    if features is None:
        # Caching is about the first 40 % of the work, training the rest: one bar from 0 to 1.
        on_cache = (lambda fraction, info: progress(0.4 * fraction, info)) if progress is not None else None
        features = cache_features(dataset, config, cache_dir, model=model, progress=on_cache, cancel=cancel)
    cache_seconds = time.perf_counter() - started
    p = min(config.p, dataset.num_classes)
    sampler = PKSampler(dataset.labels, p=p, k=config.k, seed=config.seed)
    steps_per_epoch = len(sampler)
    total = config.epochs * steps_per_epoch
    schedule = CosineWarmup.from_epochs(config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                                        warmup_epochs=config.warmup_epochs)
    top = _Top(model, config.train_from)
    optimizer = paddle.optimizer.Momentum(learning_rate=schedule(0), momentum=config.momentum,
                                          parameters=_trainable_parameters(model, network),
                                          weight_decay=paddle.regularizer.L2Decay(config.weight_decay))
    ce = CrossEntropyLabelSmooth(config.label_smoothing)
    triplet = TripletAngularMarginLoss(config.triplet_margin)
    labels = np.asarray(dataset.labels)
    log: list[dict[str, Any]] = []
    step = 0
    for epoch in range(config.epochs):
        _set_train_mode(model)
        for batch in sampler.epoch_batches(epoch):
            if cancel is not None and cancel():
                raise InterruptedError("cancelled while training")
            rng = np.random.default_rng([config.seed, 7, step])
            views = np.where(rng.random(len(batch)) < config.plain_share, 0,
                             rng.integers(1, max(2, config.views), size=len(batch)) % config.views)
            x = paddle.to_tensor(np.asarray(features[batch, views], dtype=np.float32))
            y = paddle.to_tensor(labels[batch])
            optimizer.set_lr(schedule(step))
            feats, logits = top(x)
            loss_ce = ce(logits, y)
            loss_tri = triplet(feats, y)
            loss = loss_ce + loss_tri
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            step += 1
            record = {"step": step, "epoch": epoch + 1, "loss": float(loss), "ce": float(loss_ce),
                      "triplet": float(loss_tri), "lr": schedule(step - 1)}
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"loss became {record['loss']} at step {step}; lower lr")
            log.append(record)
            if progress is not None:
                progress(0.4 + 0.6 * step / total, {"phase": "train", **record, "total_steps": total})
        if eval_fn is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs):
            log.append({"step": step, "epoch": epoch + 1, "eval": eval_fn(model, epoch + 1)})
    model.eval()
    return HeadTrainResult(model, config, log, time.perf_counter() - started, cache_seconds)


def embed_plain(model: RecognitionModel, features: np.ndarray, config: HeadTrainConfig) -> np.ndarray:
    """L2-normalised embeddings of cached view-0 outputs (the plain photos)."""
    top = _Top(model, config.train_from)
    model.eval()
    out = []
    with paddle.no_grad():
        for start in range(0, len(features), 64):
            x = paddle.to_tensor(np.asarray(features[start:start + 64, 0], dtype=np.float32))
            out.append(top(x)[0].numpy())
    feats = np.concatenate(out) if out else np.zeros((0, config.feature_dim), np.float32)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


# --- export ------------------------------------------------------------------------------------


def export_head_model(result: HeadTrainResult, out_dir: str | Path, *, class_names: Sequence[str],
                      extra: dict[str, Any] | None = None) -> ModelManifest:
    """The whole network as an inference model, plus the trained tensors (float16) and network
    settings that let a fine-tune rebuild it from the pinned ImageNet checkpoint."""
    config = result.config
    network = config.network()
    model = result.model
    extractor = RecognitionModel(model.backbone, model.neck)
    target = Path(out_dir)
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    info = {"pretrained": source(config.backbone).provenance(),
            "training": {"method": "head on cached backbone features", "config": config.to_dict(),
                         "steps": sum(1 for record in result.log if "loss" in record),
                         "classes": len(class_names), "seconds": round(result.seconds, 1),
                         "final_loss": result.log[-1]["loss"] if result.log else None},
            **(extra or {})}
    manifest = export_inference_model(extractor, partial, kind="extractor", input_size=config.image_size,
                                      name=config.model_name, version=config.model_version, extra=info)
    prefixes = trainable_prefixes(model, network)
    state = {k: v.astype("float16") for k, v in model.state_dict().items()
             if k.startswith(prefixes) and v.dtype == paddle.float32}
    paddle.save(state, str(partial / TRAIN_WEIGHTS_NAME))
    (partial / TRAIN_CONFIG_NAME).write_text(json.dumps(network), encoding="utf-8")
    manifest.files.update({TRAIN_WEIGHTS_NAME: _sha(partial / TRAIN_WEIGHTS_NAME),
                           TRAIN_CONFIG_NAME: _sha(partial / TRAIN_CONFIG_NAME)})
    manifest.write(partial)
    if target.exists():
        shutil.rmtree(target)
    os.rename(partial, target)
    return manifest


def load_head_model(model_dir: str | Path, *, num_classes: int | None = None) -> tuple[RecognitionModel, dict[str, Any]]:
    """Rebuild an exported head-trained model for further training: checkpoint + trained tensors."""
    folder = Path(model_dir)
    network = json.loads((folder / TRAIN_CONFIG_NAME).read_text(encoding="utf-8"))
    if network.get("architecture") != ARCHITECTURE:
        raise ValueError(f"{folder} is not an {ARCHITECTURE} model")
    model = build_network(network, num_classes=num_classes)
    _load_trained(model, folder)
    return model, network


def _load_trained(model: RecognitionModel, folder: Path) -> None:
    """Copy a model folder's trained tensors (not its classifier) over the ImageNet start."""
    trained = paddle.load(str(folder / TRAIN_WEIGHTS_NAME))
    own = model.state_dict()
    for key, value in trained.items():
        if key not in own or list(own[key].shape) != list(value.shape):
            raise ValueError(f"{folder}: trained tensor {key} does not fit the network")
    model.set_state_dict({**own, **{k: v.astype("float32") for k, v in trained.items() if not k.startswith("head.")}})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["ARCHITECTURE", "HeadTrainConfig", "HeadTrainResult", "build_network", "cache_features",
           "embed_plain", "export_head_model", "load_head_model", "train_head", "trainable_prefixes", "view_image"]
