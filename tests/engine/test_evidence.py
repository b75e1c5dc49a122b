"""The best match carries its homography inlier pairs (for drawing), consistent with its inlier count and geometry."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from recognition.engine.local_features import extract_local_features
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.search import VectorIndex
from recognition.engine.types import Match, RecognizedObject
from tests.engine.test_pipeline import ConstantExtractor
from tests.engine.test_verify import KNOWN_H, scene_box, textured_image, warped_into_scene


def _pipeline(boxes, local) -> RecognitionPipeline:
    """Id 1 is a look-alike with the higher cosine, id 2 the photographed product (verifies), id 3 unrelated."""
    index = VectorIndex(ConstantExtractor.feature_dim, "Flat")
    index.build(np.array([1, 2, 3], dtype=np.int64),
                np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0], [0.6, 0, 0.8, 0]], dtype=np.float32))
    return RecognitionPipeline(GivenBoxDetector(boxes), ConstantExtractor(), index, {1: "wrong", 2: "right", 3: "other"},
                               local_features=local)


def test_best_match_carries_inlier_pairs_that_agree_with_its_homography() -> None:
    reference = textured_image(1)
    scene = warped_into_scene(reference)
    box = replace(scene_box(reference), score=0.9)
    local = {1: extract_local_features(textured_image(2)), 2: extract_local_features(reference),
             3: extract_local_features(textured_image(3))}
    (obj,) = _pipeline([box], local).recognize(scene, PipelineParams(add_whole_image=False))

    evidence = obj.evidence
    assert obj.label == "right" and evidence is not None
    assert evidence.item_id == obj.matches[0].item_id == 2
    assert evidence.inliers == obj.inliers == len(evidence.reference_xy) >= PipelineParams().min_inliers
    assert evidence.query_xy.dtype == evidence.reference_xy.dtype == np.float32
    assert evidence.reference_size == (reference.shape[1], reference.shape[0])
    # Query points are photo pixels inside the box; reference points are reference pixels inside its image.
    assert (evidence.query_xy >= [box.xmin, box.ymin]).all() and (evidence.query_xy <= [box.xmax, box.ymax]).all()
    assert (evidence.reference_xy >= 0).all() and (evidence.reference_xy <= evidence.reference_size).all()
    # Each pair is one point of the product seen twice: the known warp takes the reference point onto the query point.
    projected = cv2.perspectiveTransform(evidence.reference_xy[None].astype(np.float64), KNOWN_H)[0]
    assert np.median(np.linalg.norm(projected - evidence.query_xy, axis=1)) < 3.0
    # Evidence takes no part in equality, and survives the calibration's `replace`.
    assert obj == RecognizedObject(obj.box, obj.matches, obj.confidence, obj.no_match)
    assert replace(obj, confidence=0.5).evidence is evidence


def test_no_evidence_without_a_homography_for_the_best_match() -> None:
    reference = textured_image(1)
    scene = warped_into_scene(reference)
    box = replace(scene_box(reference), score=0.9)
    params = PipelineParams(add_whole_image=False, score_threshold=0.0)
    # The photographed product has no stored features: the best match is the unverified look-alike.
    unrelated = {1: extract_local_features(textured_image(2)), 3: extract_local_features(textured_image(3))}
    (obj,) = _pipeline([box], unrelated).recognize(scene, params)
    assert obj.label == "wrong" and not obj.inliers and obj.evidence is None
    # Verification off: nothing to draw either.
    (plain,) = _pipeline([box], unrelated).recognize(scene, replace(params, verify=False))
    assert plain.evidence is None
    assert RecognizedObject(box, (Match(1, "x", 0.9),)).evidence is None
