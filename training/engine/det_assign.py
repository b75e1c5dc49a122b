"""SimOTA label assignment for PP-PicoDet, in NumPy (it needs no gradient).

Which priors (grid cells of all levels) learn which ground-truth box is decided per image from the
current predictions: candidates are priors inside a box or near its centre; each candidate's cost
for a box is its classification cost (Varifocal, against the IoU it would reach) plus
``iou_weight`` times ``-log(IoU)``; each box takes its ``k`` cheapest candidates, ``k`` being the
sum of its ten best IoUs (a well-predicted box gets more positives); a prior claimed by several
boxes keeps the cheapest. PicoDet's settings: centre radius 2.5 strides, top-k 10, IoU weight 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIG = 1e8
EPS = 1e-7


@dataclass(frozen=True)
class Assignment:
    gt_index: np.ndarray   # [A] int: the box each prior learns, -1 for negatives
    iou: np.ndarray        # [A] float: IoU of the prior's predicted box with that box (0 for negatives)

    @property
    def positives(self) -> np.ndarray:
        return np.nonzero(self.gt_index >= 0)[0]


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of ``(x1, y1, x2, y2)`` boxes."""
    lt = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    rb = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0, None), axis=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + EPS)


def _vfl_cost(scores: np.ndarray, ious: np.ndarray, alpha: float = 0.75, gamma: float = 2.0) -> np.ndarray:
    """Varifocal loss of predicted scores ``[V, 1]`` against IoU targets ``[V, G]``."""
    p = np.clip(scores, EPS, 1 - EPS)
    bce = -(ious * np.log(p) + (1 - ious) * np.log(1 - p))
    weight = np.where(ious > 0, ious, alpha * p ** gamma)
    return bce * weight


def simota_assign(scores: np.ndarray, pred_boxes: np.ndarray, centers: np.ndarray, strides: np.ndarray,
                  gt_boxes: np.ndarray, *, center_radius: float = 2.5, candidate_topk: int = 10,
                  iou_weight: float = 6.0) -> Assignment:
    """Assign ``A`` priors (``centers [A, 2]``, ``strides [A]``, predictions ``scores [A]``, ``pred_boxes [A, 4]``)
    to ``gt_boxes [G, 4]`` (one class)."""
    count = len(centers)
    gt_index = np.full(count, -1, np.int64)
    iou_out = np.zeros(count, np.float32)
    if len(gt_boxes) == 0:
        return Assignment(gt_index, iou_out)
    cx, cy = centers[:, 0:1], centers[:, 1:2]                                 # [A, 1]
    in_gt = (cx > gt_boxes[:, 0]) & (cx < gt_boxes[:, 2]) & (cy > gt_boxes[:, 1]) & (cy < gt_boxes[:, 3])
    gcx = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2
    gcy = (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2
    radius = center_radius * strides[:, None]
    in_center = (np.abs(cx - gcx) < radius) & (np.abs(cy - gcy) < radius)    # [A, G]
    candidates = np.nonzero((in_gt | in_center).any(axis=1))[0]
    if candidates.size == 0:
        return Assignment(gt_index, iou_out)
    both = (in_gt & in_center)[candidates]
    ious = pairwise_iou(pred_boxes[candidates], gt_boxes)                    # [V, G]
    cost = (_vfl_cost(scores[candidates, None], ious) + iou_weight * -np.log(ious + EPS)
            + BIG * ~both)
    topk = min(candidate_topk, len(candidates))
    dynamic_k = np.clip(np.sort(ious, axis=0)[-topk:].sum(axis=0).astype(np.int64), 1, len(candidates))
    matching = np.zeros_like(cost, dtype=bool)
    for g in range(len(gt_boxes)):
        matching[np.argsort(cost[:, g], kind="stable")[:dynamic_k[g]], g] = True
    contested = matching.sum(axis=1) > 1
    if contested.any():
        cheapest = cost[contested].argmin(axis=1)
        matching[contested] = False
        matching[np.nonzero(contested)[0], cheapest] = True
    matched = matching.any(axis=1)
    rows = np.nonzero(matched)[0]
    chosen = matching[rows].argmax(axis=1)
    gt_index[candidates[rows]] = chosen
    iou_out[candidates[rows]] = ious[rows, chosen]
    return Assignment(gt_index, iou_out)


__all__ = ["Assignment", "pairwise_iou", "simota_assign"]
