"""RecognitionModel: PPLCNetV2_base_ShiTu backbone + BNNeck (+ FC head while training)."""

from __future__ import annotations

import paddle.nn as nn

from .heads import FC
from .necks import BNNeck
from .pplcnetv2 import pplcnetv2_base_shitu


class RecognitionModel(nn.Layer):
    """Feature extractor of PP-ShiTuV2.

    Training mode returns ``{"backbone", "features", "logits"}`` (``logits`` only with a
    head) for the CE + triplet losses. Eval mode, and therefore the exported inference
    program, returns the raw BNNeck features ``[N, feature_dim]`` -- not L2-normalised,
    exactly like the official PaddleClas archives (PaddleClas normalises in its
    postprocess; our ``PaddleExtractor`` normalises on the host for both).
    """

    def __init__(self, backbone: nn.Layer, neck: nn.Layer | None = None,
                 head: nn.Layer | None = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def forward(self, x):
        backbone_out = self.backbone(x)
        features = self.neck(backbone_out) if self.neck is not None else backbone_out
        if not self.training:
            return features
        out = {"backbone": backbone_out, "features": features}
        if self.head is not None:
            out["logits"] = self.head(features)
        return out


def build_recognition_model(*, num_classes: int | None = None, feature_dim: int = 512,
                            **backbone_options) -> RecognitionModel:
    """The PP-ShiTuV2 recogniser; ``num_classes`` adds the training head."""
    backbone = pplcnetv2_base_shitu(feature_dim=feature_dim, **backbone_options)
    head = FC(feature_dim, num_classes) if num_classes else None
    return RecognitionModel(backbone, BNNeck(feature_dim), head)
