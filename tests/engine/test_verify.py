"""Local features and geometric verification on drawn, textured images warped by known homographies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from recognition.engine.boxes import inside_fraction, suppress_contained
from recognition.engine.local_features import (
    DESCRIPTOR_SCALE,
    LocalFeatures,
    LocalFeaturesError,
    extract_local_features,
    rootsift,
)
from recognition.engine.types import Box
from recognition.engine.verify import GeometricVerifier


def textured_image(seed: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A packaging-like RGB image: random filled shapes, lines and printed words (corners and blobs for SIFT)."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = np.full((height, width, 3), rng.integers(150, 256, 3), dtype=np.uint8)

    def colour() -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    for _ in range(25):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + int(rng.integers(8, 60)), y + int(rng.integers(8, 60))), colour(), -1)
        elif kind == 1:
            cv2.circle(image, (x, y), int(rng.integers(4, 30)), colour(), -1)
        else:
            cv2.line(image, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour(), int(rng.integers(1, 4)))
    for _ in range(6):
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 7))))
        origin = (int(rng.integers(0, width - 60)), int(rng.integers(15, height)))
        cv2.putText(image, word, origin, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 1.2)), colour(), 2)
    return image


# Reference -> scene: shrink a little, rotate ~8 degrees, a touch of perspective, shift into a bigger frame.
KNOWN_H = np.array([[0.85, -0.12, 60.0], [0.10, 0.88, 40.0], [0.0002, -0.0001, 1.0]])
SCENE_SIZE = (480, 360)


def warped_into_scene(reference: np.ndarray, homography: np.ndarray = KNOWN_H, seed: int = 99) -> np.ndarray:
    """The reference seen under `homography`, pasted on an unrelated textured backdrop, with a little noise."""
    backdrop = textured_image(seed, SCENE_SIZE)
    warped = cv2.warpPerspective(reference, homography, SCENE_SIZE, flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full(reference.shape[:2], 255, np.uint8), homography, SCENE_SIZE) > 0
    scene = np.where(inside[..., None], warped, backdrop)
    noise = np.random.default_rng(seed).integers(-6, 7, scene.shape)
    return np.clip(scene.astype(int) + noise, 0, 255).astype(np.uint8)


def scene_box(reference: np.ndarray, homography: np.ndarray = KNOWN_H) -> Box:
    """Bounding box of the warped reference in the scene."""
    h, w = reference.shape[:2]
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), homography)[0]
    return Box(*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist())


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return textured_image(1)


@pytest.fixture(scope="module")
def features(reference):
    scene = warped_into_scene(reference)
    return extract_local_features(reference), extract_local_features(scene), extract_local_features(textured_image(2))


def test_warped_reference_verifies_and_unrelated_does_not(features) -> None:
    ref, scene, unrelated = features
    results = GeometricVerifier().verify(scene, [ref, unrelated], early_stop=False)
    good, bad = results
    assert good is not None and bad is not None
    assert good.inliers >= 60 and good.inliers <= good.matches
    assert bad.inliers < 15
    # The estimated homography reproduces the known one: reference corners land within a few pixels.
    corners = np.array([[[0, 0], [319, 0], [319, 239], [0, 239]]], np.float32)
    expected = cv2.perspectiveTransform(corners, KNOWN_H)[0]
    found = cv2.perspectiveTransform(corners, good.homography)[0]
    assert np.abs(found - expected).max() < 4.0
    # Inlier pairs are in original pixels and agree with the known homography.
    projected = cv2.perspectiveTransform(good.reference_xy[None].astype(np.float32), KNOWN_H)[0]
    assert good.query_xy.shape == good.reference_xy.shape == (good.inliers, 2)
    assert np.median(np.linalg.norm(projected - good.query_xy, axis=1)) < 2.0


def test_verification_is_deterministic(features) -> None:
    ref, scene, unrelated = features
    first = GeometricVerifier().verify(scene, [ref, unrelated, ref])
    cv2.setRNGSeed(12345)  # whatever ran before on this thread must not matter
    second = GeometricVerifier().verify(scene, [ref, unrelated, ref])
    for a, b in zip(first, second):
        assert a.inliers == b.inliers and a.matches == b.matches
        assert np.array_equal(a.query_xy, b.query_xy)


def test_ratio_test_compares_within_one_candidate(features) -> None:
    """Two photos of one product must not veto each other's matches (a union-wide ratio test would)."""
    ref, scene, _ = features
    twin = LocalFeatures.from_bytes(ref.to_bytes())
    alone, = GeometricVerifier().verify(scene, [ref])
    both = GeometricVerifier().verify(scene, [ref, twin])
    assert both[0].inliers == both[1].inliers == alone.inliers >= 60


def test_early_stop_skips_the_rest_once_decisive(features) -> None:
    ref, scene, unrelated = features
    verifier = GeometricVerifier(chunk_size=2, decisive_inliers=30)
    results = verifier.verify(scene, [ref, unrelated, unrelated, None])
    assert results[0].inliers >= 30 and results[1] is not None and results[2] is None and results[3] is None
    exhaustive = verifier.verify(scene, [ref, unrelated, unrelated, None], early_stop=False)
    assert all(r is not None for r in exhaustive[:3]) and exhaustive[3] is None
    # Nothing decisive: every candidate is verified.
    assert all(r is not None for r in verifier.verify(scene, [unrelated, unrelated, unrelated]))
    # A caller whose own bar is higher than the decisive count never stops on a candidate below its bar.
    strong = results[0].inliers
    lenient = GeometricVerifier(chunk_size=2, decisive_inliers=strong - 1)
    assert lenient.verify(scene, [ref, unrelated, unrelated])[2] is None
    assert lenient.verify(scene, [ref, unrelated, unrelated], min_matches=strong + 1)[2] is not None


def test_too_few_matches_are_not_fitted(features) -> None:
    ref, scene, _ = features
    tiny_query = scene.subset_in_box(Box(0, 0, 12, 12))
    result, = GeometricVerifier().verify(tiny_query, [ref])
    assert result.inliers == 0 and result.homography is None
    strict, = GeometricVerifier().verify(scene, [ref], min_matches=len(scene))
    assert strict.inliers == 0 and 60 < strict.matches < len(scene)  # counted, but no homography tried
    with pytest.raises(ValueError):
        GeometricVerifier(min_matches=3)


def test_keypoints_are_in_original_pixels(reference) -> None:
    big = cv2.resize(reference, (960, 720), interpolation=cv2.INTER_LINEAR)  # long side 960 -> detected at 480
    small, large = extract_local_features(reference), extract_local_features(big)
    assert large.image_size == (960, 720) and large.scale == pytest.approx(0.5)
    assert large.keypoints[:, 0].max() > 480 and small.keypoints[:, 0].max() < 320
    result, = GeometricVerifier().verify(large, [small])
    assert result.inliers >= 60
    # A 3x resize in pixel-centre convention: x' = 3x + 1.
    points = np.array([[[10, 10], [300, 20], [150, 220]]], np.float32)
    assert np.abs(cv2.perspectiveTransform(points, result.homography)[0] - (3 * points[0] + 1)).max() < 2.0


def test_extraction_limits_and_quantisation(reference) -> None:
    features = extract_local_features(reference, max_features=100)
    assert len(features) == 100 and features.descriptors.dtype == np.uint8 and features.keypoints.dtype == np.float16
    unit = features.descriptors.astype(np.float32) / DESCRIPTOR_SCALE
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=0.01)  # RootSIFT is unit-L2; uint8 keeps it
    blank = extract_local_features(np.full((50, 60, 3), 128, np.uint8))
    assert len(blank) == 0 and blank.image_size == (60, 50)
    assert rootsift(np.full((1, 128), 2.0)).tolist() == [[round(np.sqrt(1 / 128) * DESCRIPTOR_SCALE)] * 128]
    with pytest.raises(LocalFeaturesError):
        extract_local_features(np.zeros((10, 10), np.uint8))


def test_bytes_round_trip_exactly(features) -> None:
    ref = features[0]
    blob = ref.to_bytes()
    assert len(blob) == 24 + len(ref) * (4 + 128)  # ~66 kB for 500 keypoints
    restored = LocalFeatures.from_bytes(blob)
    assert restored == ref and restored.image_size == ref.image_size and restored.scale == ref.scale
    assert restored.keypoints.tobytes() == ref.keypoints.tobytes() and restored.descriptors.tobytes() == ref.descriptors.tobytes()
    assert LocalFeatures.from_bytes(memoryview(bytearray(blob))) == ref
    empty = extract_local_features(np.full((20, 20, 3), 9, np.uint8))
    assert LocalFeatures.from_bytes(empty.to_bytes()) == empty
    for broken in (b"", b"PK\x03\x04" + blob[4:], blob[:-1], blob + b"\x00", blob[:4] + b"\x09\x00" + blob[6:]):
        with pytest.raises(LocalFeaturesError):
            LocalFeatures.from_bytes(broken)


def test_subset_in_box(features) -> None:
    scene = features[1]
    box = Box(100, 50, 300, 250)
    subset = scene.subset_in_box(box)
    xy = subset.keypoints.astype(np.float32)
    assert 0 < len(subset) < len(scene)
    assert ((xy[:, 0] >= 100) & (xy[:, 0] < 300) & (xy[:, 1] >= 50) & (xy[:, 1] < 250)).all()
    assert subset.image_size == scene.image_size and subset.scale == scene.scale
    assert scene.subset_in_box(Box(0, 0, 480, 360, whole_image=True)) is scene
    assert len(scene.subset_in_box(Box(-10, -10, -1, -1))) == 0


def test_containment_rule() -> None:
    outer, inner, other = Box(0, 0, 200, 300), Box(20, 30, 60, 80), Box(150, 0, 260, 100)
    assert inside_fraction(inner, outer) == 1.0 and inside_fraction(outer, inner) == pytest.approx(2000 / 60000)
    assert inside_fraction(Box(180, 0, 220, 10), outer) == pytest.approx(0.5)
    assert suppress_contained([inner, outer], ["cola", "cola"]) == [1]  # small IoU, still the same object
    assert suppress_contained([inner, outer], ["cola", "tea"]) == [0, 1]  # a different product inside is kept
    assert suppress_contained([outer, other], ["cola", "cola"]) == [0, 1]  # only ~45% of `other` is inside
    assert suppress_contained([outer, outer], ["cola", "cola"]) == [0]  # equal duplicates keep the first
    assert suppress_contained([], []) == []
    with pytest.raises(ValueError):
        suppress_contained([outer], [])


def test_photo_matcher_shares_matching_between_boxes_with_the_same_results(features) -> None:
    """Boxes of one photo reuse each other's nearest neighbours; every box still gets what it would alone."""
    from recognition.engine.verify import PhotoMatcher

    ref, scene, unrelated = features
    matcher = PhotoMatcher(scene)
    computed = []
    original = matcher.neighbours.__func__

    def counting(self, rows, keys, references):
        before = {key: int(entry.done.sum()) for key, entry in self._known.items()}
        out = original(self, rows, keys, references)
        computed.append(sum(int(e.done.sum()) - before.get(k, 0) for k, e in self._known.items()))
        return out

    matcher.neighbours = counting.__get__(matcher)
    verifier = GeometricVerifier()
    half = Box(0, 0, SCENE_SIZE[0] / 2, SCENE_SIZE[1])
    for box in (half, Box(0, 0, *SCENE_SIZE, whole_image=True)):
        rows = scene.rows_in_box(box)
        shared = verifier.verify(scene.subset(rows), [ref, unrelated], early_stop=False,
                                 matcher=matcher, rows=rows, keys=["ref", "unrelated"])
        alone = verifier.verify(scene.subset(rows), [ref, unrelated], early_stop=False)
        assert [(r.inliers, r.matches) for r in shared] == [(r.inliers, r.matches) for r in alone]
        assert np.array_equal(shared[0].query_xy, alone[0].query_xy)
    # The whole image only matched the keypoints outside the half box: none twice.
    inside = len(scene.rows_in_box(half))
    assert computed == [2 * inside, 2 * (len(scene) - inside)]
    with pytest.raises(ValueError):
        verifier.verify(scene, [ref], matcher=matcher)  # a shared matcher needs rows and keys


def test_matching_leaves_numpys_blas_threads_as_it_found_them(features) -> None:
    # Matching runs numpy's products on one BLAS thread (its threads' spinning would take the cores from the
    # models next); the rest of the process must keep its own setting.
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    ref, scene, unrelated = features
    with blas.limit(limits=2):
        GeometricVerifier().verify(scene, [ref, unrelated], early_stop=False)
        assert {info["num_threads"] for info in ThreadpoolController().select(user_api="blas").info()} == {2}
