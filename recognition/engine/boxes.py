"""Box geometry for the pipeline: IoU, greedy NMS, same-label containment, clipping and integer crops."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Union

import numpy as np

from .types import Box

BoxLike = Union[Box, Sequence[float]]


def _corners(box: BoxLike) -> tuple[float, float, float, float]:
    if isinstance(box, Box):
        return box.xmin, box.ymin, box.xmax, box.ymax
    xmin, ymin, xmax, ymax = (float(v) for v in box[:4])
    return xmin, ymin, xmax, ymax


def _as_array(boxes: Sequence[BoxLike] | np.ndarray) -> np.ndarray:
    if isinstance(boxes, np.ndarray):
        if boxes.size == 0:
            return np.zeros((0, 4), dtype=np.float64)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, boxes.shape[-1])[:, :4]
    return np.array([_corners(b) for b in boxes], dtype=np.float64).reshape(-1, 4)


def iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union with exclusive max corners (no PaddleClas "+1"), 0 for empty boxes."""
    ax0, ay0, ax1, ay1 = _corners(a)
    bx0, by0, bx1, by1 = _corners(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: Sequence[BoxLike] | np.ndarray, scores: Sequence[float] | np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: visit boxes by score (desc, ties keep input order) and drop any whose IoU with a kept box exceeds the threshold; returns kept indices."""
    corners = _as_array(boxes)
    score_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(corners) != len(score_arr):
        raise ValueError(f"nms got {len(corners)} boxes but {len(score_arr)} scores")
    if len(corners) == 0:
        return []
    x0, y0, x1, y1 = corners.T
    areas = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    order = np.argsort(-score_arr, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter = np.clip(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0, None) * np.clip(
            np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0, None
        )
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou_threshold]
    return kept


def inside_fraction(inner: BoxLike, outer: BoxLike) -> float:
    """Share of `inner`'s area that lies within `outer` (0 for an empty inner box)."""
    ax0, ay0, ax1, ay1 = _corners(inner)
    bx0, by0, bx1, by1 = _corners(outer)
    area = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0)
    if area <= 0:
        return 0.0
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / area


def suppress_contained(boxes: Sequence[BoxLike], labels: Sequence[str], min_inside: float = 0.8) -> list[int]:
    """Indices (input order) of boxes kept after dropping any box lying >= `min_inside` within a bigger box of the same label.

    A detector often returns a product and a part of it (the label panel, the cap); their IoU is small, so
    NMS keeps both and the user sees one product twice. The bigger box is the whole object: it wins
    regardless of score. Equal-area duplicates keep the first.
    """
    if len(boxes) != len(labels):
        raise ValueError(f"suppress_contained got {len(boxes)} boxes but {len(labels)} labels")
    corners = [_corners(box) for box in boxes]
    areas = [max(0.0, x1 - x0) * max(0.0, y1 - y0) for x0, y0, x1, y1 in corners]
    kept = []
    for i, inner in enumerate(corners):
        swallowed = any(
            j != i
            and labels[j] == labels[i]
            and (areas[j] > areas[i] or (areas[j] == areas[i] and j < i))
            and inside_fraction(inner, outer) >= min_inside
            for j, outer in enumerate(corners)
        )
        if not swallowed:
            kept.append(i)
    return kept


def clip_box(box: Box, width: int, height: int) -> Box:
    """Clamp a box into [0, width] x [0, height]; the result may be empty if the box lay outside."""
    xmin = min(max(box.xmin, 0.0), float(width))
    ymin = min(max(box.ymin, 0.0), float(height))
    xmax = min(max(box.xmax, xmin), float(width))
    ymax = min(max(box.ymax, ymin), float(height))
    return dataclasses.replace(box, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax)


def whole_image_box(image: np.ndarray) -> Box:
    """The full-frame candidate PP-ShiTu appends to every detection list."""
    height, width = image.shape[:2]
    return Box(0.0, 0.0, float(width), float(height), score=1.0, whole_image=True)


def crop_bounds(box: BoxLike, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds (x0, y0, x1, y1) covering the box, clipped to the image and at least 1 px each way."""
    if width < 1 or height < 1:
        raise ValueError(f"cannot crop from an empty {width}x{height} image")
    xmin, ymin, xmax, ymax = _corners(box)
    values = (xmin, ymin, xmax, ymax)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box has non-finite coordinates: {values}")
    # floor/ceil so a fractional box keeps every pixel it touches (PaddleClas truncates both ends).
    x0 = min(max(math.floor(xmin), 0), width - 1)
    y0 = min(max(math.floor(ymin), 0), height - 1)
    x1 = min(max(math.ceil(xmax), x0 + 1), width)
    y1 = min(max(math.ceil(ymax), y0 + 1), height)
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: BoxLike) -> np.ndarray:
    """`image[y0:y1, x0:x1]` for the box's integer bounds (see `crop_bounds`), as a contiguous copy."""
    x0, y0, x1, y1 = crop_bounds(box, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[y0:y1, x0:x1])


__all__ = ["BoxLike", "iou", "nms", "inside_fraction", "suppress_contained", "clip_box", "whole_image_box", "crop_bounds", "crop"]
