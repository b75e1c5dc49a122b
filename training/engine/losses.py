"""The two PP-ShiTuV2 training losses, written from PaddleClas' CELoss and TripletAngularMarginLoss."""

from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class CrossEntropyLabelSmooth(nn.Layer):
    """Cross-entropy against ``(1 - epsilon) * one_hot + epsilon / num_classes``, batch mean.

    Smoothing keeps the FC head from pushing logits to infinity on a few hundred products,
    which otherwise dominates the triplet term (PaddleClas ``CELoss(epsilon=0.1)``).
    """

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        num_classes = logits.shape[-1]
        one_hot = F.one_hot(labels.reshape([-1]).astype("int64"), num_classes).astype(logits.dtype)
        target = one_hot * (1.0 - self.epsilon) + self.epsilon / num_classes
        return -(F.log_softmax(logits, axis=-1) * target).sum(axis=-1).mean()


class TripletAngularMarginLoss(nn.Layer):
    """Batch-hard triplet loss on cosine similarity, plus PaddleClas' absolute term.

    ``s`` is the cosine similarity of L2-normalised features. Per anchor: ``s_ap`` = the
    *lowest* similarity to a same-label sample (the anchor itself counts, as in PaddleClas,
    so it only matters when the anchor is its identity's only sample), ``s_an`` = the
    *highest* similarity to another label. Loss = mean(max(0, s_an - s_ap + margin)) +
    absolute_weight * (mean(relu(ap_value - s_ap)) + mean(a_n)), where a_n = s_an - an_value
    when positive, else the constant 1 -- PaddleClas writes ``ones_like`` there, a constant
    with no gradient that only offsets the logged value; we keep it so our loss curves read
    like PaddleClas' logs.
    """

    def __init__(self, margin: float = 0.5, *, add_absolute: bool = True,
                 absolute_weight: float = 0.1, ap_value: float = 0.8, an_value: float = 0.4):
        super().__init__()
        self.margin = float(margin)
        self.add_absolute = add_absolute
        self.absolute_weight = float(absolute_weight)
        self.ap_value = float(ap_value)
        self.an_value = float(an_value)

    def forward(self, features: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        unit = F.normalize(features, p=2, axis=-1)
        similarity = paddle.matmul(unit, unit, transpose_y=True)
        labels = labels.reshape([-1, 1])
        same = paddle.equal(labels, labels.t())
        if not bool(paddle.any(paddle.logical_not(same))):
            raise ValueError("the triplet loss needs at least two labels in a batch")
        inf = paddle.full_like(similarity, float("inf"))
        sim_ap = paddle.where(same, similarity, inf).min(axis=1)
        sim_an = paddle.where(same, -inf, similarity).max(axis=1)
        loss = F.relu(sim_an - sim_ap + self.margin).mean()
        if self.add_absolute:
            loss_ap = F.relu(self.ap_value - sim_ap)
            excess_an = sim_an - self.an_value
            loss_an = paddle.where(excess_an > 0, excess_an, paddle.ones_like(excess_an))
            loss = loss + (loss_ap.mean() + loss_an.mean()) * self.absolute_weight
        return loss


__all__ = ["CrossEntropyLabelSmooth", "TripletAngularMarginLoss"]
