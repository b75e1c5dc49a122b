"""PicoDet's losses, SimOTA assignment and detection AP against values worked out by hand."""
import math

import numpy as np
import paddle
import pytest

from training.engine.det_assign import pairwise_iou, simota_assign
from training.engine.det_eval import average_precision, evaluate_detector, match_detections
from training.engine.det_losses import distribution_focal_loss, giou_loss, varifocal_loss


def test_varifocal_loss_weights_positives_by_iou_and_negatives_by_confidence():
    logits = paddle.to_tensor([[0.0, 0.0]])
    target = paddle.to_tensor([[0.5, 0.0]])
    # positive: BCE(0.5, 0.5) = ln 2, weight 0.5; negative: BCE(0.5, 0) = ln 2, weight 0.75 * 0.5**2
    expected = math.log(2) * 0.5 + math.log(2) * 0.75 * 0.25
    assert float(varifocal_loss(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_varifocal_loss_ignores_confidently_rejected_negatives():
    confident = float(varifocal_loss(paddle.to_tensor([[-8.0]]), paddle.to_tensor([[0.0]])))
    unsure = float(varifocal_loss(paddle.to_tensor([[0.0]]), paddle.to_tensor([[0.0]])))
    assert confident < 1e-6 < unsure


def test_giou_loss_by_hand():
    pred = paddle.to_tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    target = paddle.to_tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
    # overlap 1, union 7, hull 9: GIoU = 1/7 - 2/9; identical: 0; disjoint 1x1 boxes in a 3x3 hull: 1 - (0 - 7/9)
    expected = [1 - (1 / 7 - 2 / 9), 0.0, 1 + 7 / 9]
    np.testing.assert_allclose(giou_loss(pred, target).numpy(), expected, atol=1e-5)


def test_distribution_focal_loss_by_hand():
    uniform = paddle.zeros([1, 8])
    # target 2.3 sits between bins 2 (weight 0.7) and 3 (weight 0.3), each -log(1/8)
    assert float(distribution_focal_loss(uniform, paddle.to_tensor([2.3]))[0]) == pytest.approx(math.log(8), rel=1e-5)
    peaked = paddle.to_tensor([[0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 0.0, 0.0]])
    wrong = paddle.to_tensor([[10.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    target = paddle.to_tensor([2.5])
    assert float(distribution_focal_loss(peaked, target)[0]) < float(distribution_focal_loss(wrong, target)[0])


def _grid(size=64, stride=8):
    cells = np.arange(size // stride) * stride + stride / 2
    ys, xs = np.meshgrid(cells, cells, indexing="ij")
    centers = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)
    return centers, np.full(len(centers), stride, np.float32)


def test_simota_gives_a_box_as_many_positives_as_its_best_ious_sum_to():
    centers, strides = _grid()
    gt = np.array([[0.0, 0.0, 32.0, 32.0]], np.float32)
    pred = np.tile(np.array([[40.0, 40.0, 60.0, 60.0]], np.float32), (len(centers), 1))  # far away: IoU 0
    good = [int(np.flatnonzero((centers == [12, 12]).all(1))[0]), int(np.flatnonzero((centers == [20, 20]).all(1))[0])]
    pred[good] = gt
    scores = np.full(len(centers), 0.1, np.float32)
    assignment = simota_assign(scores, pred, centers, strides, gt)
    # two perfect predictions: the ten best IoUs sum to 2 -> k = 2, and those two are the cheapest
    assert sorted(assignment.positives.tolist()) == sorted(good)
    assert np.allclose(assignment.iou[good], 1.0) and (assignment.gt_index[good] == 0).all()


def test_simota_keeps_far_priors_negative_and_gives_each_prior_one_box():
    centers, strides = _grid(size=128)
    gts = np.array([[0.0, 0.0, 40.0, 40.0], [24.0, 24.0, 64.0, 64.0]], np.float32)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-6, 6, (len(centers), 4)).astype(np.float32)
    pred = np.concatenate([centers - 16, centers + 16], axis=1) + jitter
    assignment = simota_assign(rng.uniform(0.05, 0.9, len(centers)).astype(np.float32), pred, centers, strides, gts)
    positives = assignment.positives
    assert len(positives) >= 2 and set(assignment.gt_index[positives].tolist()) == {0, 1}
    # every positive is inside (or within 2.5 strides of the centre of) the box it learns
    for prior in positives:
        box = gts[assignment.gt_index[prior]]
        cx, cy = centers[prior]
        centre = (box[:2] + box[2:]) / 2
        inside = box[0] < cx < box[2] and box[1] < cy < box[3]
        assert inside or (abs(cx - centre[0]) < 20 and abs(cy - centre[1]) < 20)
    far = (centers > 90).all(axis=1)
    assert (assignment.gt_index[far] == -1).all()


def test_simota_without_boxes_assigns_nothing():
    centers, strides = _grid()
    assignment = simota_assign(np.zeros(len(centers)), np.zeros((len(centers), 4)), centers, strides,
                               np.zeros((0, 4), np.float32))
    assert assignment.positives.size == 0


def test_pairwise_iou():
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, b), [[1 / 7, 1.0, 0.0]], atol=1e-6)


def test_average_precision_by_hand():
    # hit, miss, hit over three truths: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    assert average_precision([(0.9, True), (0.8, False), (0.7, True)], 3) == pytest.approx(1 / 3 + (2 / 3) / 3)
    assert average_precision([], 2) == 0.0
    assert average_precision([(0.5, True), (0.4, True)], 2) == pytest.approx(1.0)


def test_a_duplicate_detection_is_a_false_positive():
    truths = np.array([[0, 0, 10, 10]], np.float32)
    detections = np.array([[0.9, 0, 0, 10, 10], [0.8, 1, 1, 10, 10]], np.float32)
    assert match_detections(detections, truths, 0.5) == [True, False]


def test_evaluate_detector_counts_only_kept_boxes_for_recall():
    truths = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    rows = np.array([[0.9, 0, 0, 10, 10], [0.1, 20, 20, 30, 30]], np.float32)   # second box under 0.2
    report = evaluate_detector(lambda image: rows, [(np.zeros((32, 32, 3), np.uint8), truths)])
    assert report["recall"] == pytest.approx(0.5)        # the pipeline would drop the 0.1 box
    assert report["mAP@0.5"] == pytest.approx(1.0)       # but both detections rank above any miss
