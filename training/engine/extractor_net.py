"""The extractor network a training run builds, its starting weights, and the Extractor contract over it
in memory (so training evaluates with the same code and preprocessing as an exported model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import paddle
import paddle.nn as nn

from recognition.engine.nets import BNNeck, FC, ColourHistogram, PPLCNetV2, RecognitionModel, build_recognition_model
from recognition.engine.preprocess import RecognitionPreprocess

from .checkpoints import MODEL_NAME, latest_checkpoint

if TYPE_CHECKING:  # the config lives with the loop that runs it; only its network fields are read here
    from .trainer import TrainConfig

FINAL_WEIGHTS_NAME = "final_weights.pdparams"
DEFAULT_DEPTHS = (2, 2, 6, 2)


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


__all__ = ["DEFAULT_DEPTHS", "FINAL_WEIGHTS_NAME", "ModelExtractor", "build_model", "load_initial_weights"]
