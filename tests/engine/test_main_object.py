"""The main-object rule: what the camera points at, or the whole image when no box is credible."""

from __future__ import annotations

import numpy as np
import pytest

from recognition.engine.main_object import (MainObjectRule, area_share, centrality, choose_main_object,
                                            main_object_box, main_score)
from recognition.engine.pipeline import GivenBoxDetector
from recognition.engine.types import Box

W, H = 1000, 800


def test_prefers_a_large_central_box_to_a_small_confident_one_at_the_edge() -> None:
    edge = Box(0, 0, 120, 120, score=0.98)  # 1.8 % of the frame, in a corner
    central = Box(300, 200, 700, 600, score=0.45)  # 20 %, centred
    assert choose_main_object([edge, central], W, H) == central
    assert choose_main_object([central, edge], W, H) == central
    assert main_score(central, W, H) > main_score(edge, W, H)


def test_a_big_product_off_centre_beats_a_smaller_neighbour_in_the_middle() -> None:
    # a photo not framed on the product (drink-dev zoomed-out scenes): it fills 16 % of the frame towards the
    # upper left, a neighbour of 6 % sits in the middle. A linear centre prior (0.4 x 0.4 against 0.245 x 1)
    # picked the neighbour; with the quarter power size stays in charge
    product = Box(0, 0, 400, 320, score=0.8)
    neighbour = Box(380, 300, 620, 500, score=0.8)
    assert centrality(product, W, H) == pytest.approx(0.4) and centrality(neighbour, W, H) == pytest.approx(1.0)
    assert choose_main_object([neighbour, product], W, H) == product
    assert main_score(product, W, H) > main_score(neighbour, W, H)


def test_falls_back_to_the_whole_image_without_a_big_confident_box() -> None:
    small = Box(450, 350, 520, 420, score=0.99)  # under min_area
    unsure = Box(200, 100, 800, 700, score=0.1)  # under det_threshold
    assert choose_main_object([small, unsure], W, H) is None
    assert choose_main_object([], W, H) is None


def test_a_box_over_most_of_the_frame_means_the_whole_image() -> None:
    almost_all = Box(10, 10, 990, 790, score=0.9)
    assert area_share(almost_all, W, H) > MainObjectRule().whole_area
    assert choose_main_object([almost_all], W, H) is None
    assert choose_main_object([almost_all], W, H, MainObjectRule(whole_area=1.0)) == almost_all


def test_whole_image_candidates_never_compete() -> None:
    whole = Box(0, 0, W, H, score=1.0, whole_image=True)
    box = Box(300, 200, 700, 600, score=0.5)
    assert choose_main_object([whole, box], W, H) == box
    assert choose_main_object([whole], W, H) is None


def test_geometry_helpers() -> None:
    assert centrality(Box(400, 300, 600, 500), W, H) == pytest.approx(1.0)
    assert centrality(Box(0, 0, 2, 2), W, H) == pytest.approx(0.0, abs=0.01)
    assert area_share(Box(-100, -100, 500, 400), W, H) == pytest.approx(500 * 400 / (W * H))
    with pytest.raises(ValueError):
        MainObjectRule(min_area=0.7, whole_area=0.6)


def test_main_object_box_runs_the_detector() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    central = Box(300, 200, 700, 600, score=0.45)
    assert main_object_box(GivenBoxDetector([Box(0, 0, 50, 50, score=0.9), central]), image) == central
    assert main_object_box(GivenBoxDetector([]), image) is None


def _answer(box: Box, label: str, inliers: int | None, score: float = 0.8):
    from recognition.engine.types import Match, RecognizedObject

    return RecognizedObject(box=box, matches=(Match(item_id=hash(label) % 1000, label=label, score=score,
                                                    inliers=inliers),))


def test_the_photographed_product_leads_the_answer_whatever_its_inliers() -> None:
    from recognition.engine.pipeline import main_first

    centre = _answer(Box(380, 250, 620, 650, score=0.8), "centre", 20)           # 12 % of the frame, central
    neighbour = _answer(Box(0, 0, 250, 200, score=0.95), "neighbour", 90)         # sharper, at the corner
    whole = _answer(Box(0, 0, W, H, whole_image=True), "whole", 120)
    unverified = _answer(Box(700, 300, 950, 600, score=0.9), "unverified", 5, score=0.95)
    order = main_first([neighbour, unverified, whole, centre], W, H, min_inliers=15)
    assert [obj.label for obj in order] == ["centre", "whole", "neighbour", "unverified"]
    # with no credible main object among the verified boxes (all small), inliers decide
    tiny = _answer(Box(480, 380, 520, 420, score=0.9), "tiny", 20)
    small = _answer(Box(0, 0, 200, 150, score=0.95), "small", 90)                 # 3.75 % of the frame
    order = main_first([tiny, small], W, H, min_inliers=15)
    assert [obj.label for obj in order] == ["small", "tiny"]
    # an unverified main object still leads: the verification ranks labels within a box, not boxes
    centre_unverified = _answer(Box(380, 250, 620, 650, score=0.8), "centre", 6, score=0.7)
    order = main_first([neighbour, whole, centre_unverified], W, H, min_inliers=15)
    assert [obj.label for obj in order] == ["centre", "whole", "neighbour"]


def test_the_main_object_joins_the_top_detections_by_score() -> None:
    from recognition.engine.pipeline import PipelineParams, select_candidates

    image = np.zeros((H, W, 3), np.uint8)
    corner = Box(0, 0, 100, 100, score=0.95)             # small, confident, at the edge
    centre = Box(350, 250, 650, 600, score=0.5)          # what the camera points at
    faint = Box(400, 300, 600, 500, score=0.1)           # under det_threshold: never kept
    kept = select_candidates([corner, faint, centre], image, PipelineParams(max_det_results=1))
    assert [box.score for box in kept] == [0.95, 0.5, 1.0] and kept[-1].whole_image
    both = select_candidates([corner, faint, centre], image, PipelineParams(max_det_results=5))
    assert [box.score for box in both if not box.whole_image] == [0.95, 0.5]
    none = select_candidates([corner, faint, centre], image, PipelineParams(max_det_results=0))
    assert len(none) == 1 and none[0].whole_image
