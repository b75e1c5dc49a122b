"""Detector metrics: average precision at IoU 0.5 and recall of the boxes the pipeline would keep.

AP is the area under the precision/recall curve over every detection (all-point interpolation, as
VOC 2010+ and COCO at one IoU). Recall counts ground-truth boxes matched by a detection among the
top ``max_results`` with score >= ``score_threshold``: the boxes PP-ShiTu actually crops (top 5, 0.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recognition.engine.main_object import choose_main_object
from recognition.engine.types import Box

from .det_assign import pairwise_iou

Detect = Callable[[np.ndarray], np.ndarray]   # image -> [K, 5] rows (score, x1, y1, x2, y2), best first


def average_precision(scored_hits: Sequence[tuple[float, bool]], num_truths: int) -> float:
    """All-point interpolated AP from ``(score, is_true_positive)`` pairs of every detection."""
    if num_truths == 0:
        return float("nan")
    if not scored_hits:
        return 0.0
    order = sorted(scored_hits, key=lambda item: -item[0])
    hits = np.array([hit for _, hit in order], dtype=np.float64)
    true_pos = np.cumsum(hits)
    precision = true_pos / np.arange(1, len(hits) + 1)
    recall = true_pos / num_truths
    # Precision envelope (monotone from the right), integrated over recall steps.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((envelope * steps).sum())


def match_detections(detections: np.ndarray, truths: np.ndarray, iou_threshold: float) -> list[bool]:
    """Greedy by score: a detection is a hit if it overlaps an unmatched truth by ``iou_threshold``."""
    hits = []
    used = np.zeros(len(truths), dtype=bool)
    ious = pairwise_iou(detections[:, 1:5], truths) if len(detections) and len(truths) else None
    for index in range(len(detections)):
        if ious is None:
            hits.append(False)
            continue
        candidates = np.where(used, -1.0, ious[index])
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            used[best] = True
            hits.append(True)
        else:
            hits.append(False)
    return hits


def evaluate_detector(detect: Detect, samples: Sequence[tuple[np.ndarray, np.ndarray]], *,
                      iou_threshold: float = 0.5, score_threshold: float = 0.2, max_results: int = 5,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``mAP@0.5`` over every detection and ``recall`` of the kept ones, on ``(image, boxes)`` samples."""
    scored: list[tuple[float, bool]] = []
    truths = kept_hits = 0
    for done, (image, boxes) in enumerate(samples, start=1):
        rows = detect(image)
        rows = rows[np.argsort(-rows[:, 0], kind="stable")] if len(rows) else rows.reshape(0, 5)
        truths += len(boxes)
        scored.extend(zip(rows[:, 0].tolist(), match_detections(rows, boxes, iou_threshold)))
        kept = rows[:max_results]
        kept = kept[kept[:, 0] >= score_threshold]
        kept_hits += sum(match_detections(kept, boxes, iou_threshold))
        if progress is not None:
            progress(done, len(samples))
    return {"images": len(samples), "boxes": truths,
            "mAP@0.5": average_precision(scored, truths),
            "recall": kept_hits / truths if truths else float("nan"),
            "iou_threshold": iou_threshold, "score_threshold": score_threshold, "max_results": max_results}


def evaluate_targets(detect: Detect, samples: Sequence[tuple[np.ndarray, np.ndarray, int]], *,
                     iou_threshold: float = 0.5, score_threshold: float = 0.2, max_results: int = 5) -> dict[str, Any]:
    """On scenes with a marked target (``(image, boxes, target)``): the share whose target is among the kept
    boxes, and the share whose main object (recognition.engine.main_object) is the target."""
    found = main = scenes = 0
    for image, boxes, target in samples:
        if target < 0:
            continue
        scenes += 1
        rows = detect(image)
        rows = rows[np.argsort(-rows[:, 0], kind="stable")] if len(rows) else rows.reshape(0, 5)
        kept = rows[:max_results]
        kept = kept[kept[:, 0] >= score_threshold]
        truth = boxes[target:target + 1]
        found += any(match_detections(row[None], truth, iou_threshold)[0] for row in kept)
        chosen = choose_main_object([Box(*map(float, row[1:5]), score=float(row[0])) for row in rows],
                                    image.shape[1], image.shape[0])
        if chosen is not None:
            main += match_detections(np.array([[1.0, *chosen.as_list()]], np.float32), truth, iou_threshold)[0]
    return {"scenes": scenes, "target_found": found / scenes if scenes else float("nan"),
            "main_object_is_target": main / scenes if scenes else float("nan")}


__all__ = ["average_precision", "evaluate_detector", "evaluate_targets", "match_detections"]
