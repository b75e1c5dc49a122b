"""Calibrated confidence: the fit, its monotonicity, the threshold rule, its JSON form, and the pipeline's "no match"."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from recognition.engine.calibration import (
    DEFAULT_CALIBRATION,
    MIN_IMAGES,
    Calibration,
    calibrate_gallery,
    choose_threshold,
    fit_calibration,
    gallery_samples,
    label_cosine,
    margin_to_rival,
)
from recognition.engine.local_features import extract_local_features
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.types import Match
from tests.engine.test_pipeline import ConstantExtractor, verifying_gallery  # noqa: F401  (fixture)
from tests.engine.test_verify import textured_image, warped_into_scene


def _separable(rng: np.random.Generator, n: int = 200):
    """Right answers: high cosine, many inliers, clear margin; wrong ones: low cosine, no inliers, rivals close."""
    right = np.arange(n) % 2 == 0
    cosine = np.where(right, rng.uniform(0.6, 0.95, n), rng.uniform(0.1, 0.45, n))
    inliers = np.where(right, rng.integers(20, 200, n), 0)
    margin = np.where(right, rng.uniform(0.1, 0.4, n), rng.uniform(0.0, 0.05, n))
    return cosine, inliers, margin, right


def test_fit_on_separable_data_is_confident_both_ways_and_deterministic(rng) -> None:
    cosine, inliers, margin, right = _separable(rng)
    fitted = fit_calibration(cosine, inliers, margin, right)
    confidences = np.array([fitted.confidence(c, i, m) for c, i, m in zip(cosine, inliers, margin)])
    assert confidences[right].min() > 0.9 and confidences[~right].max() < 0.1
    assert fitted.samples == len(right) and 0.5 <= fitted.threshold < 0.95
    assert all(fitted.accepts(c) for c in confidences[right]) and not any(fitted.accepts(c) for c in confidences[~right])
    assert fit_calibration(cosine, inliers, margin, right) == fitted
    with pytest.raises(ValueError):
        fit_calibration(cosine, inliers, margin, np.ones(len(right), dtype=bool))  # nothing wrong to learn from


def test_confidence_is_monotone_even_where_the_data_say_otherwise(rng) -> None:
    n = 400
    cosine = rng.uniform(0.2, 0.9, n)
    inliers = rng.integers(0, 80, n)
    margin = rng.uniform(0.0, 0.3, n)
    # Rightness grows with cosine but *falls* with the margin: an unconstrained fit gives the margin a negative weight.
    logit = 8 * (cosine - 0.55) - 12 * (margin - 0.15)
    right = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    fitted = fit_calibration(cosine, inliers, margin, right)
    assert fitted.cosine_weight > 0 and fitted.margin_weight == 0.0 and fitted.inliers_weight >= 0
    grid = np.linspace(-0.2, 1.0, 25)
    for calibration in (fitted, DEFAULT_CALIBRATION):
        by_cosine = [calibration.confidence(c, 10, 0.05) for c in grid]
        by_inliers = [calibration.confidence(0.4, i, 0.05) for i in range(0, 300, 7)]
        by_margin = [calibration.confidence(0.4, 10, m) for m in np.linspace(-0.5, 0.5, 21)]
        for values in (by_cosine, by_inliers, by_margin):
            assert np.all(np.diff(values) >= 0)
    with pytest.raises(ValueError, match=">= 0"):
        replace(DEFAULT_CALIBRATION, margin_weight=-0.1)


def test_threshold_is_the_lowest_reaching_the_precision_target() -> None:
    confidences = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3])
    right = np.array([1, 1, 1, 1, 1, 0, 1, 0, 0], dtype=bool)
    # precision at >= 0.7: 5/5; at >= 0.6: 5/6; at >= 0.55: 6/7; so 0.7 for 0.98, 0.55 for 0.85
    assert choose_threshold(confidences, right, target=0.98, floor=0.0) == 0.7
    assert choose_threshold(confidences, right, target=0.85, floor=0.0) == 0.55
    assert choose_threshold(confidences, right, target=0.85, floor=0.6) == 0.6  # never under the floor
    assert choose_threshold(confidences, ~right, target=0.98, floor=0.5) == 0.5  # unreachable: the floor
    assert choose_threshold(confidences, right, target=0.98, floor=0.0, min_answered=6) == 0.0  # too few answered


def test_threshold_counts_a_stranger_photo_as_answered_when_any_of_its_candidates_passes() -> None:
    known = np.linspace(0.51, 0.99, 100)  # all right
    strangers = np.full(100, 0.1)
    strangers[0] = 0.6  # one stranger sample passes anything up to 0.6
    confidences = np.concatenate([known, strangers])
    right = np.concatenate([np.ones(100, bool), np.zeros(100, bool)])
    stranger = ~right
    # One candidate per photo: 1 wrong answer in 101 at 0.51 is precise enough.
    assert choose_threshold(confidences, right, stranger=stranger, floor=0.0) == pytest.approx(0.51)
    # Six per photo: that 1 % per object becomes ~6 % of stranger photos, so the threshold moves past 0.6.
    six = choose_threshold(confidences, right, stranger=stranger, photo_candidates=6, floor=0.0)
    assert six == pytest.approx(known[known > 0.6].min())


def test_dict_round_trip_is_exact_and_json_safe() -> None:
    fitted = fit_calibration(*_separable(np.random.default_rng(3)))
    for calibration in (fitted, DEFAULT_CALIBRATION):
        data = json.loads(json.dumps(calibration.to_dict()))
        assert Calibration.from_dict(data) == calibration
        assert all(isinstance(value, (int, float)) for value in data.values())
    with pytest.raises(ValueError, match="unknown"):
        Calibration.from_dict({**fitted.to_dict(), "temperature": 1.0})
    with pytest.raises(ValueError, match="trust_verified"):
        Calibration.from_dict({**fitted.to_dict(), "trust_verified": "yes"})


def test_verification_is_trusted_only_where_no_wrong_answer_verified(rng) -> None:
    cosine, inliers, margin, right = _separable(rng)
    assert fit_calibration(cosine, inliers, margin, right, trust_verified_from=15).trust_verified
    assert not fit_calibration(cosine, inliers, margin, right).trust_verified  # not asked
    inliers = inliers.copy()
    inliers[np.flatnonzero(~right)[0]] = 30  # a look-alike family: one wrong answer verified
    assert not fit_calibration(cosine, inliers, margin, right, trust_verified_from=15).trust_verified


def test_margin_to_rival() -> None:
    assert margin_to_rival("a", 0.9, [("a", 0.9), ("a", 0.85), ("b", 0.6)]) == pytest.approx(0.3)
    assert margin_to_rival("a", 0.7, [("b", 0.8), ("a", 0.7)]) == pytest.approx(-0.1)  # verified under a rival
    assert margin_to_rival("a", 0.9, [("a", 0.9), ("a", 0.5)]) == pytest.approx(0.4)  # bound from the last hit
    assert margin_to_rival("a", 0.9, []) == pytest.approx(1.0)


def test_confidence_reads_the_labels_closest_reference_not_only_the_best_verified_one() -> None:
    # Verification put first a reference shot from another side (many inliers, cosine 0.2); the same product's
    # front shot is the photo's nearest neighbour at 0.7, a rival label's at 0.5.
    candidates = [("a", 0.7), ("b", 0.5), ("a", 0.2)]
    best = Match(3, "a", 0.2, inliers=60)
    assert label_cosine("a", 0.2, candidates) == pytest.approx(0.7)
    assert label_cosine("b", 0.5, candidates) == pytest.approx(0.5)
    assert label_cosine("c", 0.3, candidates) == pytest.approx(0.3)  # never below the match's own cosine
    calibration = replace(DEFAULT_CALIBRATION, trust_verified=False)
    by_label = calibration.confidence_for(best, candidates)
    assert by_label == pytest.approx(calibration.confidence(0.7, 60, 0.2))
    # A calibration stored before this rule (no `evidence` field) keeps reading the features it was fitted on.
    older = Calibration.from_dict({k: v for k, v in calibration.to_dict().items() if k != "evidence"})
    assert older.evidence == 1
    assert older.confidence_for(best, candidates) == pytest.approx(calibration.confidence(0.2, 60, -0.3))
    assert by_label > older.confidence_for(best, candidates)
    with pytest.raises(ValueError, match="evidence"):
        Calibration.from_dict({**calibration.to_dict(), "evidence": 7})


def _textured_gallery(products: int, photos: int):
    """Each product a drawn package seen under `photos` mild homographies; vectors: product centre + noise."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((products, 16)).astype(np.float32)
    vectors, labels, local = [], [], []
    for product in range(products):
        package = textured_image(100 + product)
        for photo in range(photos):
            angle, scale = rng.uniform(-8, 8), rng.uniform(0.8, 1.0)
            h = np.vstack([cv2.getRotationMatrix2D((160, 120), angle, scale), [0, 0, 1]])
            local.append(extract_local_features(warped_into_scene(package, h, seed=300 + 10 * product + photo)))
            vectors.append(centres[product] + 0.9 * rng.standard_normal(16).astype(np.float32))
            labels.append(f"p{product}")
    vectors = np.array(vectors)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels, local


@pytest.mark.slow
def test_calibrate_gallery_learns_from_known_and_stranger_queries() -> None:
    vectors, labels, local = _textured_gallery(6, 4)
    samples = gallery_samples(vectors, labels, local)
    assert len(samples.right) == 2 * len(labels) and samples.stranger.sum() == len(labels)
    assert not samples.right[samples.stranger].any()
    known = ~samples.stranger
    assert samples.right[known].mean() > 0.9 and (samples.inliers[known & samples.right] >= 15).mean() > 0.9
    assert (samples.inliers[samples.stranger] < 15).all()
    calibration = calibrate_gallery(vectors, labels, local)
    assert calibration.samples == len(samples.right) and calibration is not DEFAULT_CALIBRATION
    right = [calibration.confidence(c, i, m) for c, i, m, r in
             zip(samples.cosine, samples.inliers, samples.margin, samples.right) if r]
    strangers = [calibration.confidence(c, i, m) for c, i, m, s in
                 zip(samples.cosine, samples.inliers, samples.margin, samples.stranger) if s]
    assert np.median(right) > calibration.threshold > np.max(strangers)
    assert calibration.trust_verified  # no stranger verified against another drawn product
    # Too small to fit (images or products): the measured default.
    assert calibrate_gallery(vectors[: MIN_IMAGES - 1], labels[: MIN_IMAGES - 1], local[: MIN_IMAGES - 1]) is DEFAULT_CALIBRATION
    two = [i for i, label in enumerate(labels) if label in ("p0", "p1")] * 2
    assert calibrate_gallery(vectors[two], [labels[i] for i in two], [local[i] for i in two]) is DEFAULT_CALIBRATION


# Plain numbers for the pipeline tests: verified (>= 15 inliers) at cosine 0.8 -> about 0.8; cosine 1.0 and no
# inliers -> about 0.02.
HAND = Calibration(bias=-8.0, cosine_weight=4.0, inliers_weight=2.0, margin_weight=0.0, threshold=0.5)


def test_pipeline_answers_no_match_for_an_unrelated_photo_and_keeps_a_verified_one(verifying_gallery) -> None:  # noqa: F811
    index, labels, local, scene, box = verifying_gallery
    params = PipelineParams(add_whole_image=False)

    def pipeline(calibration, boxes):
        return RecognitionPipeline(GivenBoxDetector(boxes), ConstantExtractor(), index, labels, local_features=local,
                                   calibration=calibration)

    timed = pipeline(HAND, [box]).recognize_timed(scene, params)
    (obj,) = timed.objects
    assert obj.label == "right" and obj.confidence is not None and obj.confidence >= HAND.threshold and not obj.no_match
    assert obj.to_dict()["confidence"] == obj.confidence and obj.to_dict()["no_match"] is False
    assert not timed.no_match and timed.rejected == []

    # An unrelated photo: cosine says "wrong" (1.0, the extractor sees all crops alike), geometry finds nothing.
    unrelated = textured_image(77, (480, 360))
    timed = pipeline(HAND, [box]).recognize_timed(unrelated, params)
    assert timed.objects == [] and timed.no_match
    (rejected,) = timed.rejected
    assert rejected.label == "wrong" and rejected.no_match and rejected.confidence < HAND.threshold
    assert rejected.to_dict()["no_match"] is True and rejected.to_dict()["label"] == "wrong"

    # Without a calibration the same photo is answered by cosine, exactly as before.
    plain = pipeline(None, [box]).recognize_timed(unrelated, params)
    assert [o.label for o in plain.objects] == ["wrong"] and plain.objects[0].confidence is None
    assert plain.objects[0].to_dict()["no_match"] is False and plain.rejected == []


def test_a_trusting_calibration_answers_verified_matches_whatever_their_confidence(verifying_gallery) -> None:  # noqa: F811
    index, labels, local, scene, box = verifying_gallery
    params = PipelineParams(add_whole_image=False)
    strict = replace(HAND, threshold=0.999)  # the verified "right" (about 0.8) is under it
    for trusting, answered in ((False, False), (True, True)):
        pipeline = RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), index, labels, local_features=local,
                                       calibration=replace(strict, trust_verified=trusting))
        timed = pipeline.recognize_timed(scene, params)
        assert bool(timed.objects) is answered and bool(timed.rejected) is not answered
        (obj,) = timed.objects or timed.rejected
        assert obj.label == "right" and obj.confidence < strict.threshold and obj.no_match is not answered
    # an unverified best match still needs the confidence, trusting or not
    trusting = RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), index, labels, local_features=local,
                                   calibration=replace(HAND, trust_verified=True))
    assert trusting.recognize(textured_image(77, (480, 360)), params) == []


def test_calibration_replaces_the_score_threshold_and_looks_deep_without_verification(verifying_gallery) -> None:  # noqa: F811
    index, labels, local, scene, box = verifying_gallery
    eager = Calibration(bias=5.0, cosine_weight=0.0, inliers_weight=0.0, margin_weight=0.0, threshold=0.5)
    strict = PipelineParams(add_whole_image=False, verify=False, score_threshold=1.1, top_k=1)
    without = RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), index, labels).recognize(scene, strict)
    assert without == []  # nothing reaches cosine 1.1
    depths = []

    class Counting(type(index)):
        def search(self, queries, k):
            depths.append(k)
            return super().search(queries, k)

    counted = Counting.from_bytes(index.to_bytes())
    (obj,) = RecognitionPipeline(GivenBoxDetector([box]), ConstantExtractor(), counted, labels,
                                 calibration=eager).recognize(scene, strict)
    assert obj.label == "wrong" and len(obj.matches) == 1 and obj.confidence > 0.99
    assert depths == [strict.verify_top_k]  # the margin to a rival needs more than top_k hits
