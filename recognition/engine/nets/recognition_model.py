"""RecognitionModel: PPLCNetV2_base_ShiTu backbone + BNNeck (+ FC head while training)."""

from __future__ import annotations

import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .heads import FC
from .necks import BNNeck
from .pplcnetv2 import pplcnetv2_base_shitu


class RecognitionModel(nn.Layer):
    """Feature extractor of PP-ShiTuV2, optionally fused with a fixed colour descriptor.

    Training mode returns ``{"backbone", "features", "logits"}`` (``logits`` only with a
    head) for the CE + triplet losses. Eval mode, and therefore the exported inference
    program, returns the raw BNNeck features ``[N, feature_dim]`` -- not L2-normalised,
    exactly like the official PaddleClas archives (PaddleClas normalises in its
    postprocess; our ``PaddleExtractor`` normalises on the host for both).

    With a ``colour`` branch (``ColourHistogram``) the output is the unit vector
    ``[sqrt(w) * colour, sqrt(1 - w) * normalise(features)]`` (``w = colour_weight``), so the
    cosine of two outputs is ``w * colour cosine + (1 - w) * learned cosine``; training then
    also returns it as ``"fused"`` (the triplet loss learns what colour misses, the head still
    classifies the learned features).
    """

    def __init__(self, backbone: nn.Layer, neck: nn.Layer | None = None,
                 head: nn.Layer | None = None, colour: nn.Layer | None = None, colour_weight: float = 0.5):
        super().__init__()
        if colour is not None and not 0.0 < colour_weight < 1.0:
            raise ValueError(f"colour_weight must be in (0, 1), got {colour_weight}")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.colour = colour
        self.colour_weight = float(colour_weight)

    def _fuse(self, x, features):
        learned = F.normalize(features.flatten(1), axis=1) * math.sqrt(1.0 - self.colour_weight)
        return paddle.concat([self.colour(x) * math.sqrt(self.colour_weight), learned], axis=1)

    def forward(self, x):
        backbone_out = self.backbone(x)
        features = self.neck(backbone_out) if self.neck is not None else backbone_out
        if not self.training:
            return self._fuse(x, features) if self.colour is not None else features
        out = {"backbone": backbone_out, "features": features}
        if self.colour is not None:
            out["fused"] = self._fuse(x, features)
        if self.head is not None:
            out["logits"] = self.head(features)
        return out


def build_recognition_model(*, num_classes: int | None = None, feature_dim: int = 512,
                            **backbone_options) -> RecognitionModel:
    """The PP-ShiTuV2 recogniser; ``num_classes`` adds the training head."""
    backbone = pplcnetv2_base_shitu(feature_dim=feature_dim, **backbone_options)
    head = FC(feature_dim, num_classes) if num_classes else None
    return RecognitionModel(backbone, BNNeck(feature_dim), head)
