"""CE with label smoothing and PaddleClas' TripletAngularMarginLoss against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import paddle
import pytest

from training.engine.losses import CrossEntropyLabelSmooth, TripletAngularMarginLoss


def test_cross_entropy_label_smoothing_by_hand():
    # logits [ln 3, 0] -> softmax [3/4, 1/4]; label 0, epsilon 0.1, 2 classes
    # target = 0.9 * [1, 0] + 0.1 / 2 = [0.95, 0.05]
    # loss = -(0.95 ln 3/4 + 0.05 ln 1/4) = 0.95 * 0.2876821 + 0.05 * 1.3862944 = 0.3426127
    logits = paddle.to_tensor([[math.log(3.0), 0.0]])
    loss = CrossEntropyLabelSmooth(0.1)(logits, paddle.to_tensor([0]))
    assert float(loss) == pytest.approx(0.95 * math.log(4 / 3) + 0.05 * math.log(4), abs=1e-6)
    assert float(loss) == pytest.approx(0.3426127, abs=1e-6)


def test_cross_entropy_is_a_batch_mean_and_plain_ce_without_smoothing():
    # row 1 as above with epsilon 0: -ln 3/4 = 0.2876821; row 2: logits [0, 0] -> ln 2 = 0.6931472
    logits = paddle.to_tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    loss = CrossEntropyLabelSmooth(0.0)(logits, paddle.to_tensor([0, 1]))
    assert float(loss) == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, abs=1e-6)


# Four unit directions (scaled, to check the loss normalises), labels [0, 0, 1, 1]:
#   x0 = (1, 0), x1 = (0.6, 0.8), x2 = (0.8, -0.6), x3 = (0, -1)
# cosine similarities: s01 = 0.6, s02 = 0.8, s03 = 0, s12 = 0.48 - 0.48 = 0, s13 = -0.8, s23 = 0.6
FEATURES = [[2.0, 0.0], [1.8, 2.4], [0.4, -0.3], [0.0, -5.0]]
LABELS = [0, 0, 1, 1]
# hardest positive (lowest same-label similarity; self = 1 never wins): s_ap = 0.6 for every anchor
# hardest negative (highest other-label similarity): a0: max(s02, s03) = 0.8, a1: max(0, -0.8) = 0,
#   a2: max(s02, s12) = 0.8, a3: max(0, -0.8) = 0
# ranking: max(0, s_an - s_ap + 0.5) = [0.7, 0, 0.7, 0] (a1: 0 - 0.6 + 0.5 = -0.1 -> 0)  -> mean 0.35
RANKING = (0.7 + 0.0 + 0.7 + 0.0) / 4
# absolute, positives: relu(0.8 - 0.6) = 0.2 each -> mean 0.2
# absolute, negatives: s_an - 0.4 = [0.4, -0.4, 0.4, -0.4]; PaddleClas keeps positive values and
#   writes ones_like for the rest -> [0.4, 1, 0.4, 1] -> mean 0.7
ABSOLUTE = 0.2 + 0.7


def test_triplet_angular_margin_by_hand():
    loss = TripletAngularMarginLoss(margin=0.5, add_absolute=True, absolute_weight=0.1,
                                    ap_value=0.8, an_value=0.4)
    value = float(loss(paddle.to_tensor(FEATURES), paddle.to_tensor(LABELS)))
    assert value == pytest.approx(RANKING + 0.1 * ABSOLUTE, abs=1e-6)  # 0.35 + 0.09 = 0.44
    assert value == pytest.approx(0.44, abs=1e-6)


def test_triplet_without_absolute_term_is_the_ranking_loss():
    loss = TripletAngularMarginLoss(margin=0.5, add_absolute=False)
    assert float(loss(paddle.to_tensor(FEATURES), paddle.to_tensor(LABELS))) == pytest.approx(0.35, abs=1e-6)


def test_triplet_constant_branch_carries_no_gradient():
    # Move x1 slightly: only anchors 0 and 2 (active ranking/absolute terms) and the positive
    # term depend on it; the "ones_like" branch of anchors 1 and 3 must add nothing.
    features = paddle.to_tensor(FEATURES, stop_gradient=False)
    TripletAngularMarginLoss()(features, paddle.to_tensor(LABELS)).backward()
    assert np.isfinite(features.grad.numpy()).all()
    far = paddle.to_tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], stop_gradient=False)
    # well separated: s_ap ~ 1 > 0.8, s_an ~ -1 < 0.4 -> ranking 0, absolute ap 0, an constant 1
    loss = TripletAngularMarginLoss()(far, paddle.to_tensor(LABELS))
    assert float(loss) == pytest.approx(0.1 * 1.0, abs=1e-4)
    loss.backward()
    assert np.abs(far.grad.numpy()).max() == pytest.approx(0.0, abs=1e-7)


def test_triplet_needs_two_labels():
    with pytest.raises(ValueError):
        TripletAngularMarginLoss()(paddle.to_tensor(FEATURES), paddle.to_tensor([0, 0, 0, 0]))
