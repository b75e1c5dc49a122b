"""Plain value types passed between detector, extractor, index and the platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Box:
    """A box in pixel coordinates of the original (EXIF-corrected) image; xmax/ymax are exclusive."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    score: float = 1.0
    whole_image: bool = False

    @property
    def width(self) -> float:
        return max(0.0, self.xmax - self.xmin)

    @property
    def height(self) -> float:
        return max(0.0, self.ymax - self.ymin)

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_list(self) -> list[float]:
        """[xmin, ymin, xmax, ymax], the PaddleClas `bbox` order."""
        return [self.xmin, self.ymin, self.xmax, self.ymax]


@dataclass(frozen=True)
class Match:
    """One gallery hit: `score` is the inner product of L2-normalised vectors, i.e. cosine.

    `inliers` is the geometric verification's homography inlier count, None where the hit was not verified
    (verification off, no stored local features, or skipped once a better candidate was decisive).
    """

    item_id: int
    label: str
    score: float
    inliers: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "label": self.label, "score": self.score, "inliers": self.inliers}


@dataclass(frozen=True, eq=False)
class Evidence:
    """The best match's homography inlier pairs, kept so a person can see why it was matched (lines between them).

    `query_xy` is (n, 2) float32 in original pixels of the query photo; `reference_xy` is (n, 2) float32 in
    pixels of the reference crop the match's local features came from, whose (width, height) is `reference_size`.
    `item_id` is the vector id of the match they belong to.
    """

    item_id: int
    query_xy: np.ndarray
    reference_xy: np.ndarray
    reference_size: tuple[int, int]

    @property
    def inliers(self) -> int:
        return len(self.query_xy)


@dataclass(frozen=True)
class RecognizedObject:
    """A box plus its top-k gallery matches, best first; never empty so `label`/`score` always exist.

    `confidence` is the calibrated probability that `label` is right (None when the pipeline has no
    calibration). `no_match` marks an object whose confidence is under the calibration's threshold: its
    matches are only the nearest candidates, the answer for this box is "no match" (the pipeline keeps such
    objects out of its answer, in `TimedRecognition.rejected`). `evidence` holds the best match's inlier pairs
    where verification fitted a homography for it (None otherwise); it takes no part in equality.
    """

    box: Box
    matches: tuple[Match, ...]
    confidence: Optional[float] = None
    no_match: bool = False
    evidence: Optional[Evidence] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.matches:
            raise ValueError("RecognizedObject needs at least one match")

    @property
    def label(self) -> str:
        return self.matches[0].label

    @property
    def score(self) -> float:
        return self.matches[0].score

    @property
    def inliers(self) -> Optional[int]:
        return self.matches[0].inliers

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form in the PaddleX spirit (bbox, label, score, det_score, top-k), plus `confidence` and
        `no_match` (True: `label` is only the nearest candidate, not an answer)."""
        return {
            "bbox": self.box.as_list(),
            "label": self.label,
            "score": self.score,
            "det_score": self.box.score,
            "whole_image": self.box.whole_image,
            "inliers": self.inliers,
            "confidence": self.confidence,
            "no_match": self.no_match,
            "matches": [m.to_dict() for m in self.matches],
        }


@runtime_checkable
class Detector(Protocol):
    """Finds candidate boxes in an HxWx3 uint8 RGB image, after the model's own NMS, best first."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


@runtime_checkable
class Extractor(Protocol):
    """Turns RGB crops into L2-normalised float32 rows of width `feature_dim`, one model call per batch."""

    feature_dim: int

    def extract(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


__all__ = ["Box", "Evidence", "Match", "RecognizedObject", "Detector", "Extractor"]
