"""PP-ShiTu recognition: detect -> crop -> one batched extraction -> one batched search -> verify -> threshold -> NMS.

Verification (optional, needs stored reference local features) re-ranks each box's global top-`verify_top_k`
by RootSIFT homography inliers: a candidate with >= `min_inliers` is "verified" and ranks ahead of every
unverified one, by inliers then cosine. Without a local-feature source, or with `verify=False`, the pipeline
behaves exactly as plain PP-ShiTu. The photo's local features are shared by all its boxes; a main object that
none of its candidates verifies from them gets a second try from its own crop's, where that samples it finer
(`main_object_zoom`).

Calibration (optional, see calibration.py) gives every object a `confidence` (probability that its label is
right); objects under the calibration's threshold are "no match": they leave the answer for
`TimedRecognition.rejected`, marked `no_match`, and compete only among themselves in NMS, so an unconfident
box never hides a confident one. The calibrated decision then *replaces* `score_threshold`: the calibration
was fitted on best matches at every cosine, and a cosine cut-off on top of it would be a second, uncalibrated
rule (on drink-dev it dropped right answers at cosine 0.39-0.49 with 9-14 inliers). Without a calibration
nothing changes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .boxes import clip_box, crop, crop_bounds, iou, nms, suppress_contained, whole_image_box
from .errors import DimensionMismatch
from .local_features import DEFAULT_LONG_SIDE, MAX_SIDE, LocalFeatures, extract_local_features
from .main_object import choose_main_object, main_score
from .search import VectorIndex
from .types import Box, Detector, Extractor, Match, RecognizedObject
from .verify import GeometricVerifier, PhotoMatcher, Verification

if TYPE_CHECKING:  # calibration.py builds on this module
    from .calibration import Calibration

LabelSource = Union[Mapping[int, str], Callable[[Sequence[int]], Mapping[int, str]]]
# Reference local features by vector id (the same ids the index returns); missing ids are simply not verified.
LocalFeatureSource = Union[Mapping[int, LocalFeatures], Callable[[Sequence[int]], Mapping[int, LocalFeatures]]]

# A box lying at least this much inside a bigger box with the same label is the same object (see suppress_contained).
CONTAINED_FRACTION = 0.8


@dataclass(frozen=True)
class PipelineParams:
    """PP-ShiTuV2 inference defaults (PaddleClas deploy configs); thresholds keep boxes whose score is >= the threshold."""

    max_det_results: int = 5
    det_threshold: float = 0.2
    add_whole_image: bool = True
    top_k: int = 5
    score_threshold: float = 0.5  # not applied when the pipeline has a calibration (its threshold decides)
    nms_iou: float = 0.05
    # Calibrated "no match": None uses the calibration's own threshold; a caller may ask for more (or fewer) answers.
    min_confidence: Optional[float] = None
    # Geometric verification (active only when the pipeline has reference local features).
    verify: bool = True
    verify_top_k: int = 50
    # drink-dev held-out leave-one-out: no wrong candidate reached 15 inliers in 99.6% of queries (99.2% at 12),
    # recall@1 equal from 12 to 15; same-brand variants sharing a logo do reach 20-50, but score under the true product.
    min_inliers: int = 15
    local_features: int = 500
    local_long_side: int = DEFAULT_LONG_SIDE
    # Verify the whole photo even when a detection verified, so it competes on inliers like any box: in a shelf or
    # zoomed-out photo the detector may miss the product the camera points at while framing neighbours that
    # verify (drink-dev held-out: zoomed-out recall@1 0.452 -> 0.544, shelf 0.420 -> 0.444, close-ups unchanged).
    always_verify_whole_image: bool = True
    # A detection covering at least this share of the photo is not cropped when the whole image is a candidate:
    # it is nearly the same pixels, so it takes the whole image's embedding and verification instead of a second
    # one of them (about half of drink-dev's close-ups have such a box; see crop_sources). Pipeline evaluation,
    # held-out half, against cropping every box (None): leave-one-out recall@1 0.972 -> 0.976, zoomed-out and shelf
    # sets unchanged (0.824, 0.928), unknown rejected 0.970 -> 0.974.
    whole_image_cover: Optional[float] = 0.85
    # A main object that none of its candidates verified from the photo's features gets a second try from its own
    # crop's, kept where it finds more inliers, when that samples it at least this many times finer (None: never;
    # at 1.2 and 480 px, a box whose long side is under 83 % of the photo's). The photo's 500 keypoints at 480 px
    # are shared by every product in it, so a product at a fifth of a cluttered frame keeps a few dozen, too few
    # to verify, and is answered "no match" while its neighbours verify. Drink-dev held-out, the share of photos
    # whose first answer is right: shelf scenes 0.776 -> 0.800, zoomed-out 0.668 -> 0.772; close-ups and unknown
    # photos unchanged (README, *Main-object zoom*).
    main_object_zoom: Optional[float] = 1.2

    def __post_init__(self) -> None:
        if self.max_det_results < 0:
            raise ValueError(f"max_det_results must be >= 0, got {self.max_det_results}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be within [0, 1], got {self.nms_iou}")
        if self.verify_top_k < 1:
            raise ValueError(f"verify_top_k must be >= 1, got {self.verify_top_k}")
        if self.min_inliers < 4:
            raise ValueError(f"min_inliers must be >= 4 (a homography has 4 points), got {self.min_inliers}")
        if self.local_features < 1 or self.local_long_side < 16:
            raise ValueError(f"local_features must be >= 1 and local_long_side >= 16, got {self.local_features}, {self.local_long_side}")
        if self.whole_image_cover is not None and not 0.0 < self.whole_image_cover <= 1.0:
            raise ValueError(f"whole_image_cover must be within (0, 1] or None, got {self.whole_image_cover}")
        if self.main_object_zoom is not None and not self.main_object_zoom >= 1.0:
            raise ValueError(f"main_object_zoom must be >= 1 or None, got {self.main_object_zoom}")


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock milliseconds per stage; extract includes cropping, total includes labels and NMS. verify
    includes waiting for the photo's local features, which is also given alone (local_features_ms: near 0 when
    they were computed beside the models)."""

    detect_ms: float
    extract_ms: float
    search_ms: float
    total_ms: float
    verify_ms: float = 0.0
    local_features_ms: float = 0.0


@dataclass(frozen=True)
class TimedRecognition:
    """The answer (`objects`), timings, and the calibrated "no match" candidates (`rejected`, best first)."""

    objects: list[RecognizedObject]
    timings: StageTimings
    rejected: list[RecognizedObject] = field(default_factory=list)

    @property
    def no_match(self) -> bool:
        """True when the photo's answer is "no match": no object was recognised (or none confidently enough)."""
        return not self.objects


class GivenBoxDetector:
    """A real Detector for callers who already know where the product is (e.g. gallery import with a bbox)."""

    def __init__(self, boxes: Sequence[Box]) -> None:
        self._boxes = tuple(sorted(boxes, key=lambda box: -box.score))

    def detect(self, image: np.ndarray) -> list[Box]:
        return list(self._boxes)


def select_candidates(detected: Sequence[Box], image: np.ndarray, params: PipelineParams) -> list[Box]:
    """The top `max_det_results` detections by score scoring at least `det_threshold` (PP-ShiTu's rule), plus the
    main object (main_object.py) when it is not among them, clipped, plus the whole image.

    On a shelf the small confident neighbours can crowd the product the camera points at out of the top boxes
    (drink-dev held-out zoomed-out scenes: target kept 0.825 by score alone, 0.913 with the main object added;
    shelf scenes 0.976 and 0.988). Ranking every box by main score instead kept big, low-scoring boxes that merge
    two products, which then won the verified-order NMS (shelf recall@1 0.921 -> 0.877)."""
    height, width = image.shape[:2]
    confident = [box for box in detected if box.score >= params.det_threshold]
    ranked = sorted(confident, key=lambda box: -box.score)[: params.max_det_results]
    main = choose_main_object(confident, width, height) if params.max_det_results else None
    if main is not None and main not in ranked:
        ranked.append(main)
    candidates = []
    for box in ranked:
        clipped = clip_box(box, width, height)
        if clipped.area > 0:  # a box entirely outside the image has nothing to recognise
            candidates.append(clipped)
    if params.add_whole_image:
        candidates.append(whole_image_box(image))
    return candidates


def crop_sources(candidates: Sequence[Box], width: int, height: int, params: PipelineParams) -> list[int]:
    """Per candidate, the position of the candidate whose crop, embedding and verification it uses: its own, or
    for a detection covering `whole_image_cover` of the photo, the whole-image candidate's.

    Such a detection still answers as a box of its own, so it keeps its part in NMS and in the main-object choice:
    left out entirely, a smaller inner box led where the near-whole box would have made the whole image the main
    object (drink-dev held-out leave-one-out: 2 of 250 photos answered with a neighbour)."""
    own = list(range(len(candidates)))
    whole = next((i for i, box in enumerate(candidates) if box.whole_image), None)
    if whole is None or params.whole_image_cover is None:
        return own
    cover = params.whole_image_cover * width * height
    return [whole if not box.whole_image and box.area >= cover else i for i, box in zip(own, candidates)]


def zoom_box(candidates: Sequence[Box], width: int, height: int, params: PipelineParams) -> Optional[Box]:
    """The main detection, when its own crop's local features sample it at least `params.main_object_zoom` times
    finer than the photo's (the photo is shrunk to `local_long_side`; so is the crop, from its own size); else None."""
    if params.main_object_zoom is None:
        return None
    main = choose_main_object([box for box in candidates if not box.whole_image], width, height)
    if main is None:
        return None
    photo_scale = min(1.0, params.local_long_side / max(width, height))
    crop_scale = min(1.0, params.local_long_side / max(main.xmax - main.xmin, main.ymax - main.ymin, 1.0))
    return main if crop_scale >= params.main_object_zoom * photo_scale else None


def is_verified(match: Match, min_inliers: int) -> bool:
    """A match whose homography has at least `min_inliers` inliers: geometric evidence, not just a similar look."""
    return match.inliers is not None and match.inliers >= min_inliers


def rank_key(match: Match, min_inliers: int) -> tuple[bool, int, float]:
    """Sort key (ascending = best first): verified before unverified, then more inliers, then higher cosine."""
    verified = is_verified(match, min_inliers)
    return (not verified, -(match.inliers or 0) if verified else 0, -match.score)


def rerank(matches: Sequence[Match], min_inliers: int) -> list[Match]:
    """Matches by `rank_key`; stable, so with nothing verified the cosine order is kept exactly."""
    return sorted(matches, key=lambda match: rank_key(match, min_inliers))


def main_first(objects: Sequence[RecognizedObject], width: int, height: int, min_inliers: int) -> list[RecognizedObject]:
    """The answer's order: what the camera points at comes first. The main object (main_object.py: a confident,
    big, central box; the whole image when no box is credible) leads whatever its inliers, then the verified
    objects by inliers, then the unverified by cosine.

    Inliers say that a box's label is right, not which product was photographed: on a shelf a sharp neighbour
    can verify with more inliers than the product in the middle of the frame (drink-dev held-out shelf scenes:
    recall@1 of the first object 0.43 ordered by inliers, 0.94 main object first; close-ups 0.980 and 0.972)."""
    main = choose_main_object([obj.box for obj in objects if not obj.box.whole_image], width, height)

    def key(obj: RecognizedObject) -> tuple[int, float, float]:
        best = obj.matches[0]
        if (obj.box.whole_image if main is None else obj.box == main):
            return (0, 0.0, 0.0)
        if is_verified(best, min_inliers):
            return (1, -float(best.inliers or 0), -main_score(obj.box, width, height))
        return (2, -best.score, 0.0)

    return sorted(objects, key=key)


class RecognitionPipeline:
    """Runs PP-ShiTu inference over one image with any Detector, Extractor and VectorIndex; labels map vector ids to names.

    `local_features` (optional) gives reference RootSIFT features by vector id; with it and `params.verify`,
    each box's global candidates are geometrically verified with `verifier` (default GeometricVerifier()).
    `calibration` (optional) adds `confidence` to each object and answers "no match" under its threshold
    (instead of `params.score_threshold`). With `overlap_local_features` (the default) the photo's local
    features are computed on a second thread while the models run; off, after the search (same result).
    """

    def __init__(
        self,
        detector: Detector,
        extractor: Extractor,
        index: VectorIndex,
        labels: LabelSource,
        params: Optional[PipelineParams] = None,
        local_features: Optional[LocalFeatureSource] = None,
        verifier: Optional[GeometricVerifier] = None,
        calibration: Optional["Calibration"] = None,
        overlap_local_features: bool = True,
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
        self.local_features = local_features
        self.verifier = verifier or GeometricVerifier()
        self.calibration = calibration
        self.overlap_local_features = overlap_local_features

    def recognize(self, image: np.ndarray, params: Optional[PipelineParams] = None) -> list[RecognizedObject]:
        """Recognised objects, best first; boxes whose best match is under `score_threshold` (and unverified), or under
        the calibration's threshold, are dropped."""
        return self.recognize_timed(image, params).objects

    def recognize_timed(self, image: np.ndarray, params: Optional[PipelineParams] = None) -> TimedRecognition:
        """`recognize` plus per-stage timings for logs and benchmarks."""
        _check_image(image)
        params = params or self.params
        start = time.perf_counter()
        verifying = params.verify and self.local_features is not None and max(image.shape[:2]) <= MAX_SIDE
        # The photo's local features need only the photo: computed beside detection and extraction, they leave
        # the critical path (OpenCV and Paddle release the GIL; a 2-thread Paddle predictor gains little from
        # its second core, see bench/pipeline_stages.py).
        query_features = _QueryFeatures(image, params, background=self.overlap_local_features) if verifying else None
        detected = self.detector.detect(image)
        after_detect = time.perf_counter()
        candidates = select_candidates(detected, image, params)
        if not candidates:
            done = time.perf_counter()
            return TimedRecognition([], _timings(start, after_detect, done, done, done))

        sources = crop_sources(candidates, image.shape[1], image.shape[0], params)
        cropped = sorted(set(sources))
        features = self.extractor.extract([crop(image, candidates[i]) for i in cropped])
        if features.shape != (len(cropped), self.index.dim):
            raise DimensionMismatch(
                f"extractor returned {features.shape} for {len(cropped)} crops, expected ({len(cropped)}, {self.index.dim})"
            )
        features = features[[cropped.index(source) for source in sources]]
        after_extract = time.perf_counter()
        # Verification re-ranks deeper than what is shown, so the search fetches enough candidates for both;
        # a calibration's margin to the best rival label looks as deep, with or without verification.
        deep = verifying or self.calibration is not None
        scores, ids = self.index.search(features, max(params.top_k, params.verify_top_k) if deep else params.top_k)
        after_search = time.perf_counter()
        if not verifying:
            objects, rejected = self._decide(candidates, scores, ids, params, image.shape[1], image.shape[0])
            done = time.perf_counter()
            return TimedRecognition(objects, _timings(start, after_detect, after_extract, after_search, done), rejected)

        names = self._labels_for(ids)
        rows = [_labelled_row(row_scores, row_ids, names) for row_scores, row_ids in zip(scores, ids)]
        before_verify = time.perf_counter()
        zoomed = zoom_box(candidates, image.shape[1], image.shape[0], params)
        zoom_features = _QueryFeatures(image, params, background=False, box=zoomed) if zoomed is not None else None
        verified, local_features_s = self._verify(query_features, candidates, sources, rows, params,  # type: ignore[arg-type]
                                                  zoom_features=zoom_features)
        after_verify = time.perf_counter()
        objects, rejected = self._decide_verified(candidates, rows, verified, names, params)
        objects = main_first(objects, image.shape[1], image.shape[0], params.min_inliers)
        done = time.perf_counter()
        timings = _timings(start, after_detect, after_extract, after_search, done, after_verify - before_verify,
                           local_features_s)
        return TimedRecognition(objects, timings, rejected)

    def _calibrated(self, obj: RecognizedObject, row: Sequence[Match], params: PipelineParams) -> RecognizedObject:
        """`obj` with its confidence (and `no_match` under the threshold); `row` is every labelled search hit.

        Where the calibration `trust_verified` (its gallery's leave-one-out never verified a wrong product), a
        geometrically verified best match is answered whatever its confidence: a small gallery's fit can lean on
        cosine alone (its look-alikes all score high) and would call a verified but off-angle shot a stranger.
        Where the gallery holds look-alike families whose shared logos verify, the confidence decides: an
        unknown flavour of a known brand verifies against its sibling (5 % of drink-dev's unknown photos).
        A caller's `params.min_confidence` replaces the calibration's threshold (0 answers every object)."""
        if self.calibration is None:
            return obj
        confidence = self.calibration.confidence_for(obj.matches[0], [(m.label, m.score) for m in row])
        if params.min_confidence is not None:
            return replace(obj, confidence=confidence, no_match=confidence < params.min_confidence)
        verified = self.calibration.trust_verified and is_verified(obj.matches[0], params.min_inliers)
        return replace(obj, confidence=confidence, no_match=not (verified or self.calibration.accepts(confidence)))

    def _decide(
        self, candidates: list[Box], scores: np.ndarray, ids: np.ndarray, params: PipelineParams, width: int, height: int
    ) -> tuple[list[RecognizedObject], list[RecognizedObject]]:
        names = self._labels_for(ids)
        decided = []
        for box, row_scores, row_ids in zip(candidates, scores, ids):
            # Ids without a label are stale index entries (deleted products): never show them.
            row = [
                Match(item_id=int(item), label=names[int(item)], score=float(score))
                for score, item in zip(row_scores, row_ids)
                if item >= 0 and int(item) in names
            ]
            if row and (self.calibration is not None or row[0].score >= params.score_threshold):
                decided.append(self._calibrated(RecognizedObject(box=box, matches=tuple(row[: params.top_k])), row, params))

        def suppressed(objects: list[RecognizedObject]) -> list[RecognizedObject]:
            kept = nms([obj.box for obj in objects], [obj.score for obj in objects], params.nms_iou)
            return main_first([objects[i] for i in kept], width, height, params.min_inliers)

        return suppressed([o for o in decided if not o.no_match]), suppressed([o for o in decided if o.no_match])

    def _verify(
        self, query_features: "_QueryFeatures", candidates: list[Box], sources: list[int],
        rows: list[list[tuple[int, float]]], params: PipelineParams, *,
        zoom_features: Optional["_QueryFeatures"] = None,
    ) -> tuple[list[dict[int, Verification]], float]:
        """Per box, verification results by vector id for its top `verify_top_k` labelled candidates, and the
        seconds spent waiting for the query's local features. A box with another crop source (crop_sources)
        takes that candidate's results.

        The query's features are extracted once for the photo and subset per box. The whole-image candidate
        holds every box's keypoints; it is verified after the detections, and with
        `params.always_verify_whole_image` off only when none of them verified (cheaper on busy photos) or when it
        stands for a near-whole detection.
        `_suppress_verified` keeps it only where it adds a product no detection shows.
        The box of `zoom_features` (zoom_box) that no candidate verified with the photo's features gets a second
        try with them, its own crop's (computed only then), on a matcher of its own, kept where it found more
        inliers; a box that verified keeps its count, so its rank against the whole image's, from the same
        features, stays fair.
        """
        results: list[dict[int, Verification]] = [{} for _ in candidates]
        wanted = [[item for item, _ in row[: params.verify_top_k]] for row in rows]
        all_ids = sorted({item for row in wanted for item in row})
        if not all_ids:
            return results, 0.0
        source = self.local_features
        references = source(all_ids) if callable(source) and not isinstance(source, Mapping) else {
            item: source[item] for item in all_ids if item in source  # type: ignore[index, operator]
        }
        if not references:
            return results, 0.0
        started = time.perf_counter()
        query = query_features.result()
        local_features_s = time.perf_counter() - started
        matcher = PhotoMatcher(query)  # the boxes overlap and share candidates: each pair is matched once
        order = sorted(range(len(candidates)), key=lambda i: candidates[i].whole_image)  # detections first
        standing_in = {shared for i, shared in enumerate(sources) if shared != i}  # the whole image, for a near-whole box
        any_detection_verified = False
        for i in order:
            box = candidates[i]
            if sources[i] != i:
                continue
            if (box.whole_image and any_detection_verified and not params.always_verify_whole_image
                    and i not in standing_in):
                continue
            ids_here = [item for item in wanted[i] if item in references]
            features_here = [references[item] for item in ids_here]
            rows = query.rows_in_box(box)
            found = self.verifier.verify(query.subset(rows), features_here, min_matches=params.min_inliers,
                                         matcher=matcher, rows=rows, keys=ids_here)
            if zoom_features is not None and box == zoom_features.box and _most_inliers(found) < params.min_inliers:
                width, height = query.image_size
                zoomed_found = [None if result is None else _in_photo(result, box, width, height) for result in
                                self.verifier.verify(zoom_features.result(), features_here, min_matches=params.min_inliers)]
                if _most_inliers(zoomed_found) > _most_inliers(found):  # never trade evidence for less
                    found = zoomed_found
            results[i] = {item: result for item, result in zip(ids_here, found) if result is not None}
            if not box.whole_image and _most_inliers(found) >= params.min_inliers:
                any_detection_verified = True
        for i, shared in enumerate(sources):
            results[i] = results[shared]
        return results, local_features_s

    def _decide_verified(
        self,
        candidates: list[Box],
        rows: list[list[tuple[int, float]]],
        verified: list[dict[int, Verification]],
        names: Mapping[int, str],
        params: PipelineParams,
    ) -> tuple[list[RecognizedObject], list[RecognizedObject]]:
        decided = []
        for box, row, found in zip(candidates, rows, verified):
            matches = [
                Match(item_id=item, label=names[item], score=score, inliers=found[item].inliers if item in found else None)
                for item, score in row
            ]
            ranked = tuple(rerank(matches, params.min_inliers)[: params.top_k])
            # Geometric evidence outweighs a low cosine (occlusion, odd angle): verified boxes skip the score threshold.
            if ranked and (self.calibration is not None or is_verified(ranked[0], params.min_inliers)
                           or ranked[0].score >= params.score_threshold):
                best = found.get(ranked[0].item_id)
                evidence = best.evidence(ranked[0].item_id) if best is not None else None  # the lines a person sees
                decided.append(self._calibrated(RecognizedObject(box=box, matches=ranked, evidence=evidence), matches, params))
        accepted = self._suppress_verified([o for o in decided if not o.no_match], params)
        return accepted, self._suppress_verified([o for o in decided if o.no_match], params)

    @staticmethod
    def _suppress_verified(objects: list[RecognizedObject], params: PipelineParams) -> list[RecognizedObject]:
        """Verified-order NMS, same-label containment and the whole-image fallback rule, best first."""
        objects = sorted(objects, key=lambda obj: rank_key(obj.matches[0], params.min_inliers))
        detections = [obj for obj in objects if not obj.box.whole_image]
        # NMS on the verified order (scores are just descending ranks), then same-label containment.
        kept = nms([obj.box for obj in detections], [-rank for rank in range(len(detections))], params.nms_iou)
        kept_objects = [detections[i] for i in sorted(kept)]
        contained = suppress_contained([obj.box for obj in kept_objects], [obj.label for obj in kept_objects], CONTAINED_FRACTION)
        result = [kept_objects[i] for i in contained]
        rank = {id(obj): position for position, obj in enumerate(objects)}
        for whole in (obj for obj in objects if obj.box.whole_image):
            # The fallback adds nothing when a detection already shows that product, and it never suppresses a
            # detection (it contains them all); it only yields to higher-ranked detections it overlaps.
            if any(obj.label == whole.label for obj in result):
                continue
            if any(rank[id(obj)] < rank[id(whole)] and iou(obj.box, whole.box) > params.nms_iou for obj in result):
                continue
            result.append(whole)
        return sorted(result, key=lambda obj: rank[id(obj)])

    def _labels_for(self, ids: np.ndarray) -> Mapping[int, str]:
        wanted = sorted({int(item) for item in ids.ravel() if item >= 0})
        if not wanted:
            return {}
        if callable(self.labels) and not isinstance(self.labels, Mapping):
            return self.labels(wanted)
        return {item: self.labels[item] for item in wanted if item in self.labels}


class _QueryFeatures:
    """The photo's local features (or, with `box`, its crop's, in the crop's pixels: float16 keypoints keep their
    precision there), computed on a short-lived thread (or, without `background`, on first use)."""

    def __init__(self, image: np.ndarray, params: PipelineParams, *, background: bool, box: Optional[Box] = None) -> None:
        self._image, self._params, self.box = image, params, box
        self._value: Optional[LocalFeatures] = None
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        if background:
            self._thread = threading.Thread(target=self._compute, name="query-local-features", daemon=True)
            self._thread.start()

    def _compute(self) -> None:
        try:
            image = self._image if self.box is None else crop(self._image, self.box)
            self._value = extract_local_features(
                image, max_features=self._params.local_features, long_side=self._params.local_long_side
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> LocalFeatures:
        if self._thread is not None:
            self._thread.join()
        elif self._value is None and self._error is None:
            self._compute()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _in_photo(result: Verification, box: Box, width: int, height: int) -> Verification:
    """A verification of `box`'s crop moved to photo pixels (the crop starts at crop_bounds' corner): its inlier
    points and the homography, which then maps reference pixels to the photo's."""
    x0, y0, _, _ = crop_bounds(box, width, height)
    shift = np.array([x0, y0], np.float32)
    homography = None
    if result.homography is not None:
        homography = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]]) @ result.homography
    return replace(result, query_xy=result.query_xy + shift, homography=homography)


def _most_inliers(found: Sequence[Optional[Verification]]) -> int:
    return max((result.inliers for result in found if result is not None), default=0)


def _labelled_row(row_scores: np.ndarray, row_ids: np.ndarray, names: Mapping[int, str]) -> list[tuple[int, float]]:
    """(id, cosine) best first, without padding, stale ids (no label: deleted products) or repeats."""
    row: list[tuple[int, float]] = []
    seen: set[int] = set()
    for score, item in zip(row_scores, row_ids):
        item = int(item)
        if item >= 0 and item in names and item not in seen:
            seen.add(item)
            row.append((item, float(score)))
    return row


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 uint8 RGB array (see imageio.load_image), got {type(image).__name__} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: {image.shape}")


def _timings(start: float, detect: float, extract: float, search: float, end: float, verify_s: float = 0.0,
             local_features_s: float = 0.0) -> StageTimings:
    return StageTimings(
        detect_ms=(detect - start) * 1000,
        extract_ms=(extract - detect) * 1000,
        search_ms=(search - extract) * 1000,
        total_ms=(end - start) * 1000,
        verify_ms=verify_s * 1000,
        local_features_ms=local_features_s * 1000,
    )


__all__ = [
    "CONTAINED_FRACTION",
    "GivenBoxDetector",
    "LabelSource",
    "LocalFeatureSource",
    "PipelineParams",
    "RecognitionPipeline",
    "StageTimings",
    "TimedRecognition",
    "crop_sources",
    "is_verified",
    "main_first",
    "rank_key",
    "rerank",
    "select_candidates",
    "zoom_box",
]
