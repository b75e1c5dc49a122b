"""Recognition pipeline on generated scenes with a real (non-learned) extractor, plus box geometry."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.boxes import clip_box, crop, crop_bounds, iou, nms
from recognition.engine.errors import DimensionMismatch
from recognition.engine.main_object import choose_main_object
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.search import VectorIndex
from recognition.engine.types import Box, Match, RecognizedObject

SIZE = 96  # object side in the scene


def _pattern(kind: str, first: tuple[int, int, int], second: tuple[int, int, int], size: int = SIZE) -> np.ndarray:
    """A product-like object: two colours in a distinctive layout."""
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "stripes":
        mask = (xx // 12) % 2 == 0
    elif kind == "checks":
        mask = ((xx // 16) + (yy // 16)) % 2 == 0
    elif kind == "dot":
        mask = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    else:  # diagonal bands
        mask = ((xx + yy) // 20) % 2 == 0
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[mask], pixels[~mask] = first, second
    return pixels


PRODUCTS = {
    "red-stripes": _pattern("stripes", (220, 20, 30), (250, 250, 250)),
    "green-checks": _pattern("checks", (30, 180, 40), (250, 220, 0)),
    "blue-dot": _pattern("dot", (250, 140, 0), (20, 40, 200)),
    "purple-bands": _pattern("bands", (130, 30, 160), (0, 210, 210)),
    # gallery-only distractors
    "pink-dot": _pattern("dot", (255, 105, 180), (60, 60, 60)),
    "brown-checks": _pattern("checks", (120, 70, 20), (200, 180, 140)),
}
IN_SCENE = ["red-stripes", "green-checks", "blue-dot", "purple-bands"]
SCENE_BOXES = [Box(20, 30, 20 + SIZE, 30 + SIZE), Box(200, 40, 200 + SIZE, 40 + SIZE),
               Box(60, 220, 60 + SIZE, 220 + SIZE), Box(330, 200, 330 + SIZE, 200 + SIZE)]


def _resized(pixels: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.NEAREST))


def _scene(rng: np.random.Generator) -> np.ndarray:
    """Cluttered muted background (random blocks) with the four products pasted at SCENE_BOXES."""
    blocks = rng.integers(70, 150, (360 // 20, 480 // 20, 3), dtype=np.uint8)
    scene = np.kron(blocks, np.ones((20, 20, 1), dtype=np.uint8))
    for name, box in zip(IN_SCENE, SCENE_BOXES):
        scene[int(box.ymin):int(box.ymax), int(box.xmin):int(box.xmax)] = PRODUCTS[name]
    # Sensor noise over everything, so scene crops never equal the gallery pixels exactly.
    return np.clip(scene.astype(int) + rng.integers(-14, 15, scene.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def gallery():
    """Two reference photos per product (the object's own crop at two scales), indexed with the histogram extractor."""
    extractor = ColourHistogramExtractor(bins=8)
    images, labels = [], {}
    for position, name in enumerate(PRODUCTS):
        for variant, side in enumerate((64, 150)):
            labels[100 + 10 * position + variant] = name
            images.append(_resized(PRODUCTS[name], side))
    index = VectorIndex(extractor.feature_dim, "Flat")
    index.build(np.array(list(labels), dtype=np.int64), extractor.extract(images))
    return extractor, index, labels


class CountingExtractor(ColourHistogramExtractor):
    """The real extractor, counting batch calls."""

    calls = 0

    def extract(self, crops):
        type(self).calls += 1
        return super().extract(crops)


def _pipeline(gallery, boxes, **options) -> RecognitionPipeline:
    extractor, index, labels = gallery
    return RecognitionPipeline(GivenBoxDetector(boxes), extractor, index, labels, **options)


def _by_label(objects: list[RecognizedObject]) -> dict[str, RecognizedObject]:
    return {obj.label: obj for obj in objects if not obj.box.whole_image}


def test_each_object_is_recognised_at_its_box(gallery, rng) -> None:
    boxes = [replace(box, score=0.9) for box in SCENE_BOXES]
    objects = _pipeline(gallery, boxes).recognize(_scene(rng))
    found = _by_label(objects)
    assert set(found) == set(IN_SCENE)
    for name, box in zip(IN_SCENE, boxes):
        assert found[name].box == box
        assert 0.6 < found[name].score < 1.0 and found[name].box.score == 0.9
        assert found[name].matches[0].item_id in {i for i, label in gallery[2].items() if label == name}
    # unverified objects: the main object (main_object.py: confident, big, central) first, the rest by cosine
    main = choose_main_object([obj.box for obj in objects], *_scene(rng).shape[1::-1])
    assert main is not None and objects[0].box == main
    assert [obj.score for obj in objects[1:]] == sorted((obj.score for obj in objects[1:]), reverse=True)


def test_one_extract_and_one_search_call(gallery, rng) -> None:
    _, index, labels = gallery
    CountingExtractor.calls = 0
    searches = []

    class CountingIndex(VectorIndex):
        def search(self, queries, k):
            searches.append(len(queries))
            return super().search(queries, k)

    counted = CountingIndex.from_bytes(index.to_bytes())
    pipeline = RecognitionPipeline(GivenBoxDetector(SCENE_BOXES), CountingExtractor(), counted, labels)
    pipeline.recognize(_scene(rng))
    assert CountingExtractor.calls == 1 and searches == [len(SCENE_BOXES) + 1]  # + whole image


def test_whole_image_candidate(gallery) -> None:
    photo = _resized(PRODUCTS["green-checks"], 200)  # a reference-style photo: the product fills the frame
    objects = _pipeline(gallery, []).recognize(photo)
    assert len(objects) == 1
    assert objects[0].box.whole_image and objects[0].label == "green-checks"
    assert objects[0].box.as_list() == [0.0, 0.0, 200.0, 200.0] and objects[0].box.score == 1.0
    assert _pipeline(gallery, []).recognize(photo, PipelineParams(add_whole_image=False)) == []


def test_nms_keeps_one_of_two_overlapping_boxes_of_one_object(gallery, rng) -> None:
    exact = replace(SCENE_BOXES[0], score=0.8)
    shifted = Box(exact.xmin + 8, exact.ymin + 6, exact.xmax + 8, exact.ymax + 6, score=0.9)
    assert iou(exact, shifted) > 0.05
    params = PipelineParams(add_whole_image=False)
    objects = _pipeline(gallery, [exact, shifted]).recognize(_scene(rng), params)
    assert [obj.label for obj in objects] == ["red-stripes"]
    assert objects[0].box == exact  # the better recognition score wins, not the better detector score
    loose = replace(params, nms_iou=0.9)
    assert len(_pipeline(gallery, [exact, shifted]).recognize(_scene(rng), loose)) == 2


def test_raising_score_threshold_drops_objects(gallery, rng) -> None:
    scene = _scene(rng)
    boxes = SCENE_BOXES + [Box(400, 20, 470, 90)]  # plain background: matches nothing well
    pipeline = _pipeline(gallery, boxes)
    everything = pipeline.recognize(scene, PipelineParams(score_threshold=-1.0, add_whole_image=False))
    assert len(everything) == 5
    default = pipeline.recognize(scene, PipelineParams(add_whole_image=False))
    assert set(_by_label(default)) == set(IN_SCENE)  # the background box fell under 0.5
    cut = float(np.median([obj.score for obj in everything]))
    kept = pipeline.recognize(scene, PipelineParams(score_threshold=cut, add_whole_image=False))
    assert 0 < len(kept) < len(everything)
    assert all(obj.score >= cut for obj in kept)
    assert pipeline.recognize(scene, PipelineParams(score_threshold=1.01)) == []


def test_det_threshold_and_max_det_results(gallery, rng) -> None:
    scores = [0.9, 0.6, 0.3, 0.1]
    boxes = [replace(box, score=score) for box, score in zip(SCENE_BOXES, scores)]
    pipeline = _pipeline(gallery, boxes)
    scene = _scene(rng)
    no_whole = PipelineParams(add_whole_image=False)
    assert set(_by_label(pipeline.recognize(scene, no_whole))) == set(IN_SCENE[:3])  # 0.1 < det_threshold 0.2
    strict = replace(no_whole, det_threshold=0.5)
    assert set(_by_label(pipeline.recognize(scene, strict))) == set(IN_SCENE[:2])
    top_two = replace(no_whole, max_det_results=2, det_threshold=0.0)
    assert set(_by_label(pipeline.recognize(scene, top_two))) == set(IN_SCENE[:2])


@pytest.mark.parametrize("top_k", [1, 3, 12])
def test_top_k_is_respected(gallery, rng, top_k: int) -> None:
    params = PipelineParams(top_k=top_k, add_whole_image=False)
    objects = _pipeline(gallery, SCENE_BOXES).recognize(_scene(rng), params)
    assert len(objects) == 4
    for obj in objects:
        assert len(obj.matches) == top_k  # gallery has 12 vectors
        assert list(obj.matches) == sorted(obj.matches, key=lambda m: -m.score)


def test_label_callable_and_stale_ids(gallery, rng) -> None:
    extractor, index, labels = gallery
    asked = []

    def lookup(ids):
        asked.append(list(ids))
        return {item: labels[item] for item in ids if labels[item] != "red-stripes"}  # red-stripes were deleted

    pipeline = RecognitionPipeline(GivenBoxDetector(SCENE_BOXES), extractor, index, lookup)
    objects = pipeline.recognize(_scene(rng), PipelineParams(add_whole_image=False))
    assert len(asked) == 1 and asked[0] == sorted(set(asked[0]))
    assert "red-stripes" not in {m.label for obj in objects for m in obj.matches}
    assert set(_by_label(objects)) == set(IN_SCENE[1:])


def test_boxes_are_clipped_and_outside_boxes_dropped(gallery, rng) -> None:
    partly_outside = Box(-30, -10, 20 + SIZE, 30 + SIZE)  # covers the red-stripes object and the corner
    outside = Box(500, 400, 600, 450)
    objects = _pipeline(gallery, [partly_outside, outside]).recognize(_scene(rng), PipelineParams(add_whole_image=False, score_threshold=0.0))
    assert len(objects) == 1 and objects[0].box.as_list() == [0, 0, 20 + SIZE, 30 + SIZE]


class _Slow:
    """Wraps a detector or extractor and sleeps before `detect`/`extract`, so a stage's time is known."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def detect(self, image):
        time.sleep(self.seconds)
        return self.inner.detect(image)

    def extract(self, crops):
        time.sleep(self.seconds)
        return self.inner.extract(crops)


def test_timings_and_validation(gallery, rng) -> None:
    extractor, index, labels = gallery
    slow = RecognitionPipeline(_Slow(GivenBoxDetector(SCENE_BOXES), 0.2), _Slow(extractor, 0.05), index, labels)
    timed = slow.recognize_timed(_scene(rng))
    t = timed.timings
    # each stage is charged its own time: 200 ms asleep in detection, 50 ms in extraction, and the extract
    # clock starts after detection (were it started with the request, it would exceed the detection time)
    assert t.detect_ms >= 200 and t.extract_ms >= 50
    assert t.extract_ms < t.detect_ms
    assert t.total_ms >= t.detect_ms + t.extract_ms + t.search_ms
    assert len(timed.objects) >= 4
    with pytest.raises(DimensionMismatch):
        RecognitionPipeline(GivenBoxDetector([]), ColourHistogramExtractor(bins=4, feature_dim=64), index, labels)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        _pipeline(gallery, []).recognize(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        RecognizedObject(Box(0, 0, 1, 1), ())
    obj = RecognizedObject(Box(0, 0, 4, 2, score=0.7), (Match(3, "x", 0.9),))
    assert obj.to_dict()["bbox"] == [0, 0, 4, 2] and obj.to_dict()["det_score"] == 0.7


@pytest.mark.slow
def test_histogram_extractor_is_normalised_and_projects(rng) -> None:
    crops = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.zeros((5, 7, 3), dtype=np.uint8)]
    for extractor in (ColourHistogramExtractor(), ColourHistogramExtractor(bins=4), ColourHistogramExtractor(bins=16)):
        features = extractor.extract(crops)
        assert features.shape == (2, 512) and features.dtype == np.float32
        assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    same = ColourHistogramExtractor().extract([crops[0], crops[0].copy()])
    assert float(same[0] @ same[1]) == pytest.approx(1.0, abs=1e-6)
    assert ColourHistogramExtractor().extract([]).shape == (0, 512)


# --- boxes ------------------------------------------------------------------------------


def test_iou_and_nms() -> None:
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 10, 10), Box(10, 0, 20, 10)) == 0.0  # touching edges, exclusive max
    assert iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], dtype=float)
    assert nms(boxes, [0.5, 0.9, 0.7, 0.9], 0.3) == [1, 2]  # ties keep input order
    assert nms(boxes, [0.5, 0.9, 0.7, 0.9], 1.0) == [1, 3, 2, 0]
    assert nms([], [], 0.5) == []
    with pytest.raises(ValueError):
        nms(boxes, [0.5], 0.5)


def test_clip_and_crop() -> None:
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    clipped = clip_box(Box(-5, 3, 40, 25, score=0.4), 30, 20)
    assert clipped.as_list() == [0, 3, 30, 20] and clipped.score == 0.4
    assert np.array_equal(crop(image, Box(2, 3, 7, 9)), image[3:9, 2:7])  # PaddleClas img[ymin:ymax, xmin:xmax]
    assert crop(image, Box(2.5, 3.2, 6.1, 8.9)).shape == (6, 5, 3)  # floor/ceil keeps touched pixels
    assert crop(image, Box(5, 5, 5, 5)).shape == (1, 1, 3)  # at least one pixel
    assert crop(image, Box(29.5, 19.5, 40, 40)).shape == (1, 1, 3)
    assert crop_bounds([100, 100, 200, 200], 30, 20) == (29, 19, 30, 20)
    with pytest.raises(ValueError):
        crop(image, Box(float("nan"), 0, 1, 1))


# --- with engine-B's Paddle extractor ------------------------------------------------------


@pytest.fixture(scope="module")
def paddle_extractor(tmp_path_factory):
    """A randomly initialised PP-ShiTuV2 recogniser exported and loaded like any installed model (64 px inputs for speed)."""
    paddle = pytest.importorskip("paddle")
    inference = pytest.importorskip("recognition.engine.inference")
    from recognition.engine.export import export_inference_model
    from recognition.engine.nets import build_recognition_model

    paddle.seed(3)
    out = tmp_path_factory.mktemp("pipeline-rec") / "rec"
    export_inference_model(build_recognition_model(), out, kind="extractor", input_size=64, name="pipeline-test")
    return inference.PaddleExtractor.from_dir(out, threads=2)


@pytest.mark.slow
def test_pipeline_with_exported_paddle_extractor(paddle_extractor, rng) -> None:
    images, labels = [], {}
    for position, name in enumerate(PRODUCTS):
        for variant, side in enumerate((64, 150)):
            labels[100 + 10 * position + variant] = name
            images.append(_resized(PRODUCTS[name], side))
    index = VectorIndex(paddle_extractor.feature_dim, "Flat")
    index.build(np.array(list(labels), dtype=np.int64), paddle_extractor.extract(images))
    pipeline = RecognitionPipeline(GivenBoxDetector(SCENE_BOXES), paddle_extractor, index, labels)
    timed = pipeline.recognize_timed(_scene(rng), PipelineParams(score_threshold=-1.0, add_whole_image=False, top_k=3))
    assert len(timed.objects) == 4 and timed.timings.extract_ms > 0
    assert all(len(obj.matches) == 3 and -1.0 <= obj.score <= 1.0 + 1e-5 for obj in timed.objects)
    # Untrained, every feature is alike (cos ~0.995 between products), but the noisy scene crop is still
    # nearest to its own pattern's reference photos (cos ~0.999-1.0) for every seed we tried.
    assert set(_by_label(timed.objects)) == set(IN_SCENE)


# --- geometric verification ------------------------------------------------------------


class ConstantExtractor:
    """A real Extractor that sees every crop alike, so cosine ranking is fixed by the index vectors alone."""

    feature_dim = 4

    def extract(self, crops):
        features = np.zeros((len(crops), self.feature_dim), dtype=np.float32)
        features[:, 0] = 1.0
        return features


@pytest.fixture(scope="module")
def verifying_gallery():
    """Id 1 "wrong" has the query's exact vector (cosine 1.0); id 2 "right" (cosine 0.8) is the photographed product."""
    from recognition.engine.local_features import extract_local_features
    from tests.engine.test_verify import scene_box, textured_image, warped_into_scene

    reference = textured_image(1)
    index = VectorIndex(ConstantExtractor.feature_dim, "Flat")
    index.build(np.array([1, 2, 3], dtype=np.int64),
                np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0], [0.6, 0, 0.8, 0]], dtype=np.float32))
    labels = {1: "wrong", 2: "right", 3: "other"}
    local = {1: extract_local_features(textured_image(2)), 2: extract_local_features(reference),
             3: extract_local_features(textured_image(3))}
    box = replace(scene_box(reference), score=0.9)
    return index, labels, local, warped_into_scene(reference), box


def _verifying(verifying_gallery, boxes, **options) -> RecognitionPipeline:
    index, labels, local, _, _ = verifying_gallery
    return RecognitionPipeline(GivenBoxDetector(boxes), ConstantExtractor(), index, labels, **{"local_features": local, **options})


def test_verified_candidate_beats_higher_cosine_wrong_one(verifying_gallery) -> None:
    index, labels, local, scene, box = verifying_gallery
    params = PipelineParams(add_whole_image=False)
    timed = _verifying(verifying_gallery, [box]).recognize_timed(scene, params)
    (obj,) = timed.objects
    assert obj.label == "right" and obj.matches[0].item_id == 2 and obj.score == pytest.approx(0.8)
    assert obj.inliers is not None and obj.inliers >= params.min_inliers and timed.timings.verify_ms > 0
    assert [m.label for m in obj.matches] == ["right", "wrong", "other"]
    assert all(isinstance(m.inliers, int) and m.inliers < params.min_inliers for m in obj.matches[1:])
    assert obj.to_dict()["inliers"] == obj.inliers and obj.to_dict()["matches"][1]["inliers"] == obj.matches[1].inliers
    # Same photo, same gallery: cosine alone (verification off, or no local features) picks the look-alike.
    for plain in (_verifying(verifying_gallery, [box]).recognize_timed(scene, replace(params, verify=False)),
                  _verifying(verifying_gallery, [box], local_features=None).recognize_timed(scene, params)):
        assert plain.objects[0].label == "wrong" and plain.objects[0].inliers is None and plain.timings.verify_ms == 0.0
        assert plain.objects[0].to_dict()["matches"][0]["inliers"] is None
    # A callable source is asked once, for the union of the boxes' candidates; results are deterministic.
    asked = []

    def lookup(ids):
        asked.append(list(ids))
        return {item: local[item] for item in ids}

    again = _verifying(verifying_gallery, [box], local_features=lookup).recognize(scene, params)
    assert asked == [[1, 2, 3]] and [o.to_dict() for o in again] == [obj.to_dict()]


def test_verified_box_survives_low_cosine_and_top_k_cut(verifying_gallery) -> None:
    _, _, _, scene, box = verifying_gallery
    strict = PipelineParams(add_whole_image=False, score_threshold=0.9, top_k=1)
    (obj,) = _verifying(verifying_gallery, [box]).recognize(scene, strict)
    assert obj.label == "right" and len(obj.matches) == 1  # verified from rank 2, shown although cosine 0.8 < 0.9
    assert _verifying(verifying_gallery, [box]).recognize(scene, replace(strict, min_inliers=10_000))[0].label == "wrong"
    # Only the first verify_top_k candidates are verified.
    (shallow,) = _verifying(verifying_gallery, [box]).recognize(scene, replace(strict, verify_top_k=1, top_k=3))
    assert shallow.label == "wrong" and [m.inliers is None for m in shallow.matches] == [False, True, True]


def test_search_depth_follows_verification(verifying_gallery) -> None:
    index, labels, local, scene, box = verifying_gallery
    depths = []

    class CountingIndex(VectorIndex):
        def search(self, queries, k):
            depths.append(k)
            return super().search(queries, k)

    counted = CountingIndex.from_bytes(index.to_bytes())
    params = PipelineParams(top_k=2, verify_top_k=7, add_whole_image=False)
    RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), counted, labels, local_features=local).recognize(scene, params)
    RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), counted, labels).recognize(scene, params)
    RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), counted, labels, local_features=local).recognize(
        scene, replace(params, verify=False))
    assert depths == [7, 2, 2]
    for bad in ({"verify_top_k": 0}, {"min_inliers": 3}, {"local_features": 0}):
        with pytest.raises(ValueError):
            PipelineParams(**bad)


def test_containment_suppresses_a_part_of_the_same_product(verifying_gallery) -> None:
    _, _, _, scene, box = verifying_gallery
    part = Box(box.xmin, box.ymin, (box.xmin + box.xmax) / 2, (box.ymin + box.ymax) / 2, score=0.95)  # a quarter
    assert iou(part, box) < 0.5
    params = PipelineParams(add_whole_image=False, nms_iou=0.5)  # NMS alone keeps both
    objects = _verifying(verifying_gallery, [part, box]).recognize(scene, params)
    assert [(o.box, o.label) for o in objects] == [(box, "right")]
    plain = _verifying(verifying_gallery, [part, box]).recognize(scene, replace(params, verify=False))
    assert len(plain) == 2  # without verification the pipeline is exactly as before


def test_whole_image_is_a_verified_fallback(verifying_gallery) -> None:
    _, _, _, scene, box = verifying_gallery
    # With a verified detection of the same product the whole image adds nothing and is dropped.
    objects = _verifying(verifying_gallery, [box]).recognize(scene)
    assert [(o.box.whole_image, o.label) for o in objects] == [(False, "right")]
    # Without detections the whole image itself is verified.
    (whole,) = _verifying(verifying_gallery, []).recognize(scene)
    assert whole.box.whole_image and whole.label == "right" and whole.inliers >= PipelineParams().min_inliers


def test_whole_image_competes_when_the_detector_frames_only_a_neighbour(verifying_gallery) -> None:
    """A shelf-like photo: the detector boxes a small neighbour ("other") and misses the big product ("right"),
    which the verified whole image still answers. The box leads: it is a credible main object (main_first)."""
    import cv2

    from tests.engine.test_verify import textured_image

    _, _, _, scene, _ = verifying_gallery
    neighbour = cv2.resize(textured_image(3), (200, 150), interpolation=cv2.INTER_AREA)
    shelf = np.full((360, 700, 3), 128, np.uint8)
    shelf[:, :480] = scene
    shelf[100:250, 490:690] = neighbour
    neighbour_box = Box(490, 100, 690, 250, score=0.9)
    objects = _verifying(verifying_gallery, [neighbour_box]).recognize(shelf)
    assert [(o.box.whole_image, o.label) for o in objects] == [(False, "other"), (True, "right")]
    assert objects[1].inliers > objects[0].inliers >= PipelineParams().min_inliers
    # As a fallback only, the whole photo is not verified once the neighbour is: the big product is lost.
    fallback = _verifying(verifying_gallery, [neighbour_box]).recognize(
        shelf, PipelineParams(always_verify_whole_image=False))
    assert [o.label for o in fallback] == ["other"]


def test_match_and_timings_stay_backward_compatible() -> None:
    match = Match(3, "x", 0.9)
    assert match.inliers is None and match.to_dict() == {"item_id": 3, "label": "x", "score": 0.9, "inliers": None}
    from recognition.engine.pipeline import StageTimings

    assert StageTimings(1.0, 2.0, 3.0, 6.0).verify_ms == 0.0


def test_a_box_covering_nearly_the_whole_photo_takes_the_whole_image_crop(gallery) -> None:
    """A close-up's box over most of the frame is nearly the whole image's pixels: it is not cropped and embedded
    a second time, it takes the whole-image candidate's answer."""
    from recognition.engine.pipeline import crop_sources, select_candidates

    photo = _resized(PRODUCTS["green-checks"], 200)
    near_whole, smaller = Box(5, 5, 195, 195, score=0.9), Box(20, 20, 180, 180, score=0.8)  # 90 % and 64 % of it
    candidates = select_candidates([near_whole, smaller], photo, PipelineParams())
    assert candidates == [near_whole, smaller, Box(0, 0, 200, 200, whole_image=True)]
    assert crop_sources(candidates, 200, 200, PipelineParams()) == [2, 1, 2]
    assert crop_sources(candidates, 200, 200, PipelineParams(whole_image_cover=None)) == [0, 1, 2]
    # Without the whole-image candidate every box is cropped, however big.
    assert crop_sources([near_whole], 200, 200, PipelineParams(add_whole_image=False)) == [0]
    crops = []

    class CropCounter(ColourHistogramExtractor):
        def extract(self, images):
            crops.append(len(images))
            return super().extract(images)

    _, index, labels = gallery
    pipeline = RecognitionPipeline(GivenBoxDetector([near_whole]), CropCounter(bins=8), index, labels)
    objects = pipeline.recognize(photo)
    assert crops == [1] and [o.label for o in objects] == ["green-checks"]
    with pytest.raises(ValueError):
        PipelineParams(whole_image_cover=0.0)


class CropCountingExtractor(ConstantExtractor):
    """ConstantExtractor, counting the crops it is given."""

    def __init__(self) -> None:
        self.crops = 0

    def extract(self, crops):
        self.crops += len(crops)
        return super().extract(crops)


def test_a_near_whole_detection_still_decides_the_main_object(verifying_gallery) -> None:
    """A close-up of "right" with a smaller "other" printed inside it: the near-whole detection makes the whole
    image the main object, so the photographed product answers, not the inner box; its crop is still saved."""
    import cv2

    from tests.engine.test_verify import textured_image

    index, labels, local, _, _ = verifying_gallery
    photo = cv2.resize(textured_image(1), (400, 300), interpolation=cv2.INTER_LINEAR)
    photo[110:190, 150:250] = cv2.resize(textured_image(3), (100, 80), interpolation=cv2.INTER_AREA)
    near_whole, inner = Box(8, 6, 392, 294, score=0.9), Box(150, 110, 250, 190, score=0.8)  # 92 % and 7 % of it
    extractor = CropCountingExtractor()
    pipeline = RecognitionPipeline(GivenBoxDetector([near_whole, inner]), extractor, index, labels, local_features=local)
    objects = pipeline.recognize(photo)
    assert objects[0].label == "right" and objects[0].inliers >= PipelineParams().min_inliers
    assert extractor.crops == 2  # the inner box and the whole image; the near-whole box shares the latter
    # The whole image is verified for the near-whole box even when it would otherwise be only a fallback.
    fallback = pipeline.recognize(photo, PipelineParams(always_verify_whole_image=False))
    assert fallback[0].label == "right" and fallback[0].box == near_whole
    # The inner box alone is the main object, and leads.
    alone = _verifying(verifying_gallery, [inner]).recognize(photo)
    assert alone[0].label == "other" and alone[0].box == inner


def test_local_features_beside_the_models_give_the_same_answer(verifying_gallery) -> None:
    _, _, _, scene, box = verifying_gallery
    beside = _verifying(verifying_gallery, [box]).recognize_timed(scene)
    after = _verifying(verifying_gallery, [box], overlap_local_features=False).recognize_timed(scene)
    assert [o.to_dict() for o in beside.objects] == [o.to_dict() for o in after.objects]
    assert beside.objects[0].label == "right" and after.timings.local_features_ms > 0
    assert 0 <= beside.timings.local_features_ms <= beside.timings.verify_ms


def _small_product_in_clutter() -> tuple[np.ndarray, Box]:
    """A 2000 x 1500 photo: the "right" product at 6 % of the frame among 64 textured neighbours that take most of
    the photo's 500 keypoints (as on a shelf)."""
    import cv2

    from tests.engine.test_verify import textured_image

    photo = np.zeros((1500, 2000, 3), np.uint8)
    for n, (top, left) in enumerate((t, l) for t in range(0, 1500, 187) for l in range(0, 2000, 250)):
        cell = photo[top:top + 187, left:left + 250]
        cell[:] = cv2.resize(textured_image(10 + n), (250, 187))[:cell.shape[0], :cell.shape[1]]
    product = cv2.resize(textured_image(1), (500, 375), interpolation=cv2.INTER_CUBIC)  # the "right" reference, 1.56x
    photo[560:935, 750:1250] = product
    return photo, Box(750, 560, 1250, 935, score=0.9)


def test_a_small_main_object_is_verified_from_its_own_crop(verifying_gallery) -> None:
    """Shrunk with the photo to 480 px, a product at 6 % of a cluttered frame keeps too few keypoints to verify and
    the higher-cosine look-alike is answered; its own crop's features verify it."""
    from recognition.engine.pipeline import zoom_box

    photo, box = _small_product_in_clutter()
    params = PipelineParams(add_whole_image=False)
    (obj,) = _verifying(verifying_gallery, [box]).recognize(photo, params)
    assert obj.label == "right" and obj.inliers >= params.min_inliers
    # the inlier pairs are in the photo's pixels, on the product, not in the crop's
    xs, ys = obj.evidence.query_xy[:, 0], obj.evidence.query_xy[:, 1]
    assert xs.min() >= box.xmin and xs.max() < box.xmax and ys.min() >= box.ymin and ys.max() < box.ymax
    (unzoomed,) = _verifying(verifying_gallery, [box]).recognize(photo, replace(params, main_object_zoom=None))
    assert unzoomed.label == "wrong" and (unzoomed.matches[0].inliers or 0) < params.min_inliers
    # Only where the crop is sampled at least 1.2x finer: not in a photo already under 480 px, nor for a main
    # object whose long side is 85 % of the photo's (480 / 1700 px against 480 / 2000 px: 1.18x).
    assert zoom_box([box], 2000, 1500, params) == box
    assert zoom_box([Box(100, 60, 220, 180, score=0.9)], 320, 240, params) is None
    assert zoom_box([Box(150, 350, 1850, 1150, score=0.9)], 2000, 1500, params) is None
    assert zoom_box([Box(150, 350, 1750, 1150, score=0.9)], 2000, 1500, params) is not None  # 1.25x
    with pytest.raises(ValueError, match="main_object_zoom"):
        PipelineParams(main_object_zoom=0.5)
