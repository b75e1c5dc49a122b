"""PP-PicoDet's training losses: Varifocal (classification), GIoU and Distribution Focal (boxes).

Weights as in the recipe (../shared/design/PP-SHITU.md): VFL 1.0, GIoU 2.0, DFL 0.25. Boxes are
``(x1, y1, x2, y2)``; DFL targets are the four prior-to-side distances in stride units.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F

EPS = 1e-9


def varifocal_loss(logits: paddle.Tensor, target: paddle.Tensor, *, alpha: float = 0.75,
                   gamma: float = 2.0) -> paddle.Tensor:
    """Summed VFL: positives (target = IoU > 0) weighted by their IoU, negatives by ``alpha * p**gamma``.

    Negatives are down-weighted the more confidently they are already rejected; positives that
    localise well count more, so the score learns to rank boxes by quality (IoU-aware).
    """
    score = F.sigmoid(logits).detach()
    weight = paddle.where(target > 0, target, alpha * score.pow(gamma))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * weight).sum()


def box_iou_pairs(boxes_a: paddle.Tensor, boxes_b: paddle.Tensor, *, generalized: bool = False) -> paddle.Tensor:
    """IoU (or GIoU) of row-aligned boxes ``[N, 4]`` and ``[N, 4]``."""
    x1 = paddle.maximum(boxes_a[:, 0], boxes_b[:, 0])
    y1 = paddle.maximum(boxes_a[:, 1], boxes_b[:, 1])
    x2 = paddle.minimum(boxes_a[:, 2], boxes_b[:, 2])
    y2 = paddle.minimum(boxes_a[:, 3], boxes_b[:, 3])
    inter = (x2 - x1).clip(min=0) * (y2 - y1).clip(min=0)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clip(min=0) * (boxes_a[:, 3] - boxes_a[:, 1]).clip(min=0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clip(min=0) * (boxes_b[:, 3] - boxes_b[:, 1]).clip(min=0)
    union = area_a + area_b - inter + EPS
    iou = inter / union
    if not generalized:
        return iou
    hull_w = paddle.maximum(boxes_a[:, 2], boxes_b[:, 2]) - paddle.minimum(boxes_a[:, 0], boxes_b[:, 0])
    hull_h = paddle.maximum(boxes_a[:, 3], boxes_b[:, 3]) - paddle.minimum(boxes_a[:, 1], boxes_b[:, 1])
    hull = hull_w.clip(min=0) * hull_h.clip(min=0) + EPS
    return iou - (hull - union) / hull


def giou_loss(pred_boxes: paddle.Tensor, target_boxes: paddle.Tensor) -> paddle.Tensor:
    """Per-box ``1 - GIoU`` (0 for a perfect box, up to 2 for far-apart boxes)."""
    return 1.0 - box_iou_pairs(pred_boxes, target_boxes, generalized=True)


def distribution_focal_loss(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """Per-side DFL: cross-entropy towards the two bins around a continuous target, weighted by nearness.

    ``logits [N, reg_max + 1]``, ``target [N]`` in ``[0, reg_max)``. Concentrating the distribution on
    the neighbouring integers makes its expectation (the decoded distance) land on the target.
    """
    left = paddle.floor(target)
    right = left + 1
    weight_left = right - target
    weight_right = target - left
    log_probs = F.log_softmax(logits, axis=-1)
    left_lp = paddle.take_along_axis(log_probs, left.astype("int64").unsqueeze(-1), axis=-1).squeeze(-1)
    right_lp = paddle.take_along_axis(log_probs, right.astype("int64").unsqueeze(-1), axis=-1).squeeze(-1)
    return -(left_lp * weight_left + right_lp * weight_right)


__all__ = ["box_iou_pairs", "distribution_focal_loss", "giou_loss", "varifocal_loss"]
