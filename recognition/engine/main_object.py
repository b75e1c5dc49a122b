"""The main object: the product the camera points at, or the whole image when no box is a credible one.

A detector's most confident box is often a neighbour or a fragment on a cluttered shelf; what the person
photographed is usually big and near the centre. The rule weighs the three: a box's *main score* is its
detection score times the square root of its share of the frame times its centrality (1 at the centre, 0 in a
corner) to the power CENTRALITY_POWER. The power is a quarter, not one: people do not always centre the product,
and a linear centre prior let a smaller neighbour in the middle beat it (eval-crops, main-object crop recall@1
on held-out drink-dev products: zoomed-out photos pasted anywhere 0.676 -> 0.784, shelf scenes with the target
in the middle 0.916 -> 0.908, plain photos 0.948 either way; in the per-box dump the power was chosen from, any
power from 0.1 to 0.33 scored within 0.016 of this). A box only competes when it is confident (``det_threshold``) and big enough (``min_area``); when none
is, the answer is the whole image, which is never worse than a fragment for a plain close-up. A box that covers
most of the frame (``whole_area``) means the whole image too: on drink-dev close-ups, cropping the last margin
away lost more (context, a cut-off edge) than it removed.

Used at ingest (a reference photo without its own box) and at recognition, where objects are ordered
main-first among equals (see pipeline.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .types import Box, Detector


CENTRALITY_POWER = 0.25


@dataclass(frozen=True)
class MainObjectRule:
    """Thresholds of the rule, as fractions of the image; defaults measured with ``eval-crops`` (see README)."""

    det_threshold: float = 0.2
    min_area: float = 0.05
    whole_area: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_area <= self.whole_area <= 1.0:
            raise ValueError(f"need 0 <= min_area <= whole_area <= 1, got {self.min_area}, {self.whole_area}")


def centrality(box: Box, width: int, height: int) -> float:
    """1 when the box's centre is the image's, falling linearly to 0 at a corner."""
    cx = (box.xmin + box.xmax) / 2 / max(width, 1) - 0.5
    cy = (box.ymin + box.ymax) / 2 / max(height, 1) - 0.5
    return max(0.0, 1.0 - math.hypot(cx, cy) / math.hypot(0.5, 0.5))


def area_share(box: Box, width: int, height: int) -> float:
    """The share of the frame the box covers (clipped to the image)."""
    w = max(0.0, min(box.xmax, width) - max(box.xmin, 0.0))
    h = max(0.0, min(box.ymax, height) - max(box.ymin, 0.0))
    return w * h / max(width * height, 1)


def main_score(box: Box, width: int, height: int) -> float:
    """Detection score x sqrt(share of the frame) x centrality ** CENTRALITY_POWER: how likely this is what was photographed."""
    return box.score * math.sqrt(area_share(box, width, height)) * centrality(box, width, height) ** CENTRALITY_POWER


def choose_main_object(boxes: Sequence[Box], width: int, height: int,
                       rule: Optional[MainObjectRule] = None) -> Optional[Box]:
    """The main object among ``boxes``, or None for the whole image (no confident, big-enough box)."""
    rule = rule or MainObjectRule()
    eligible = [box for box in boxes if not box.whole_image and box.score >= rule.det_threshold
                and area_share(box, width, height) >= rule.min_area]
    if not eligible:
        return None
    best = max(eligible, key=lambda box: main_score(box, width, height))
    return None if area_share(best, width, height) >= rule.whole_area else best


def main_object_box(detector: Detector, image: np.ndarray, rule: Optional[MainObjectRule] = None) -> Optional[Box]:
    """The main object of ``image`` as ``detector`` sees it, or None for the whole image."""
    return choose_main_object(detector.detect(image), image.shape[1], image.shape[0], rule)


__all__ = ["CENTRALITY_POWER", "MainObjectRule", "area_share", "centrality", "choose_main_object", "main_object_box", "main_score"]
