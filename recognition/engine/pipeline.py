"""PP-ShiTu recognition: detect -> crop -> one batched extraction -> one batched search -> threshold -> NMS."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .boxes import clip_box, crop, nms, whole_image_box
from .errors import DimensionMismatch
from .search import VectorIndex
from .types import Box, Detector, Extractor, Match, RecognizedObject

LabelSource = Union[Mapping[int, str], Callable[[Sequence[int]], Mapping[int, str]]]


@dataclass(frozen=True)
class PipelineParams:
    """PP-ShiTuV2 inference defaults (PaddleClas deploy configs); thresholds keep boxes whose score is >= the threshold."""

    max_det_results: int = 5
    det_threshold: float = 0.2
    add_whole_image: bool = True
    top_k: int = 5
    score_threshold: float = 0.5
    nms_iou: float = 0.05

    def __post_init__(self) -> None:
        if self.max_det_results < 0:
            raise ValueError(f"max_det_results must be >= 0, got {self.max_det_results}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be within [0, 1], got {self.nms_iou}")


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock milliseconds per stage; extract includes cropping, total includes labels and NMS."""

    detect_ms: float
    extract_ms: float
    search_ms: float
    total_ms: float


@dataclass(frozen=True)
class TimedRecognition:
    objects: list[RecognizedObject]
    timings: StageTimings


class GivenBoxDetector:
    """A real Detector for callers who already know where the product is (e.g. gallery import with a bbox)."""

    def __init__(self, boxes: Sequence[Box]) -> None:
        self._boxes = tuple(sorted(boxes, key=lambda box: -box.score))

    def detect(self, image: np.ndarray) -> list[Box]:
        return list(self._boxes)


def main_object_box(detector: Detector, image: np.ndarray, *, det_threshold: float = 0.2) -> Optional[Box]:
    """The detector's best box at or above ``det_threshold`` (a reference photo's product), or None for the whole image."""
    boxes = [box for box in detector.detect(image) if box.score >= det_threshold]
    return max(boxes, key=lambda box: box.score) if boxes else None


def select_candidates(detected: Sequence[Box], image: np.ndarray, params: PipelineParams) -> list[Box]:
    """Top `max_det_results` detections by score, minus those under `det_threshold`, clipped, plus the whole image."""
    height, width = image.shape[:2]
    ranked = sorted(detected, key=lambda box: -box.score)[: params.max_det_results]
    candidates = []
    for box in ranked:
        if box.score < params.det_threshold:
            continue
        clipped = clip_box(box, width, height)
        if clipped.area > 0:  # a box entirely outside the image has nothing to recognise
            candidates.append(clipped)
    if params.add_whole_image:
        candidates.append(whole_image_box(image))
    return candidates


class RecognitionPipeline:
    """Runs PP-ShiTu inference over one image with any Detector, Extractor and VectorIndex; labels map vector ids to names."""

    def __init__(
        self,
        detector: Detector,
        extractor: Extractor,
        index: VectorIndex,
        labels: LabelSource,
        params: Optional[PipelineParams] = None,
    ) -> None:
        if int(extractor.feature_dim) != index.dim:
            raise DimensionMismatch(
                f"extractor produces {extractor.feature_dim}-d features but the index holds {index.dim}-d vectors",
                details={"extractor_dim": int(extractor.feature_dim), "index_dim": index.dim},
            )
        self.detector = detector
        self.extractor = extractor
        self.index = index
        self.labels = labels
        self.params = params or PipelineParams()

    def recognize(self, image: np.ndarray, params: Optional[PipelineParams] = None) -> list[RecognizedObject]:
        """Recognised objects, best score first; boxes whose best match is under `score_threshold` are dropped."""
        return self.recognize_timed(image, params).objects

    def recognize_timed(self, image: np.ndarray, params: Optional[PipelineParams] = None) -> TimedRecognition:
        """`recognize` plus per-stage timings for logs and benchmarks."""
        _check_image(image)
        params = params or self.params
        start = time.perf_counter()
        detected = self.detector.detect(image)
        after_detect = time.perf_counter()
        candidates = select_candidates(detected, image, params)
        if not candidates:
            done = time.perf_counter()
            return TimedRecognition([], _timings(start, after_detect, done, done, done))

        features = self.extractor.extract([crop(image, box) for box in candidates])
        if features.shape != (len(candidates), self.index.dim):
            raise DimensionMismatch(
                f"extractor returned {features.shape} for {len(candidates)} crops, expected ({len(candidates)}, {self.index.dim})"
            )
        after_extract = time.perf_counter()
        scores, ids = self.index.search(features, params.top_k)
        after_search = time.perf_counter()

        objects = self._decide(candidates, scores, ids, params)
        return TimedRecognition(objects, _timings(start, after_detect, after_extract, after_search, time.perf_counter()))

    def _decide(self, candidates: list[Box], scores: np.ndarray, ids: np.ndarray, params: PipelineParams) -> list[RecognizedObject]:
        names = self._labels_for(ids)
        objects = []
        for box, row_scores, row_ids in zip(candidates, scores, ids):
            # Ids without a label are stale index entries (deleted products): never show them.
            matches = tuple(
                Match(item_id=int(item), label=names[int(item)], score=float(score))
                for score, item in zip(row_scores, row_ids)
                if item >= 0 and int(item) in names
            )
            if matches and matches[0].score >= params.score_threshold:
                objects.append(RecognizedObject(box=box, matches=matches))
        kept = nms([obj.box for obj in objects], [obj.score for obj in objects], params.nms_iou)
        return sorted((objects[i] for i in kept), key=lambda obj: -obj.score)

    def _labels_for(self, ids: np.ndarray) -> Mapping[int, str]:
        wanted = sorted({int(item) for item in ids.ravel() if item >= 0})
        if not wanted:
            return {}
        if callable(self.labels) and not isinstance(self.labels, Mapping):
            return self.labels(wanted)
        return {item: self.labels[item] for item in wanted if item in self.labels}


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 uint8 RGB array (see imageio.load_image), got {type(image).__name__} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: {image.shape}")


def _timings(start: float, detect: float, extract: float, search: float, end: float) -> StageTimings:
    return StageTimings(
        detect_ms=(detect - start) * 1000,
        extract_ms=(extract - detect) * 1000,
        search_ms=(search - extract) * 1000,
        total_ms=(end - start) * 1000,
    )


__all__ = [
    "GivenBoxDetector",
    "LabelSource",
    "PipelineParams",
    "RecognitionPipeline",
    "StageTimings",
    "TimedRecognition",
    "select_candidates",
]
