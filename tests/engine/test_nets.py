"""Shapes, frozen BNNeck bias, re-parameterisation and parameter counts of the engine's nets."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from recognition.engine.nets import (
    PicoDet,
    RepDepthwiseSeparable,
    build_recognition_model,
    pplcnetv2_base,
    reparameterize,
)
from recognition.engine.nets.picodet import upsample_nearest_2x

PUBLISHED_PPLCNETV2_BASE_PARAMS = 6.6e6      # PaddleClas model zoo (ImageNet classifier)
PUBLISHED_PICODET_LCNET_1_5X_PARAMS = 3.10e6  # PaddleDetection legacy zoo, 80 COCO classes


def n_params(layer) -> int:
    return sum(int(np.prod(p.shape)) for p in layer.parameters())


def deployed_params(layer) -> int:
    """Parameters left after ``rep()``: the multi-kernel branches fold into ``dw_conv``."""
    branch_params = sum(n_params(block.dw_conv_list) for block in layer.sublayers()
                        if isinstance(block, RepDepthwiseSeparable) and block.use_rep)
    return n_params(layer) - branch_params


def randomise_batchnorm(layer, seed: int = 0) -> None:
    """Give every BN non-trivial statistics so fusion and export are really exercised."""
    rng = np.random.default_rng(seed)
    for sub in layer.sublayers():
        if isinstance(sub, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D)):
            size = sub._mean.shape[0]
            sub._mean.set_value(rng.normal(0, 0.1, size).astype("float32"))
            sub._variance.set_value(rng.uniform(0.5, 1.5, size).astype("float32"))
            sub.weight.set_value(rng.uniform(0.5, 1.5, size).astype("float32"))
            if not sub.bias.stop_gradient:
                sub.bias.set_value(rng.normal(0, 0.1, size).astype("float32"))


@pytest.fixture(scope="module")
def recognition_model():
    paddle.seed(7)
    model = build_recognition_model(num_classes=10)
    randomise_batchnorm(model)
    return model


def test_recognition_model_shapes(recognition_model):
    x = paddle.randn([2, 3, 64, 64])
    recognition_model.train()
    out = recognition_model(x)
    assert set(out) == {"backbone", "features", "logits"}
    assert out["features"].shape == [2, 512]
    assert out["logits"].shape == [2, 10]
    recognition_model.eval()
    features = recognition_model(x)
    assert isinstance(features, paddle.Tensor) and features.shape == [2, 512]


def test_shitu_backbone_keeps_stride_16_in_stage4(recognition_model):
    backbone = recognition_model.backbone
    backbone.eval()
    x = backbone.stem(paddle.randn([1, 3, 64, 64]))
    for stage in backbone.stages:
        x = stage(x)
    assert x.shape == [1, 1024, 4, 4]  # 64 / 16: the ShiTu variant's last stage has stride 1
    assert backbone.fc is None and backbone.last_conv.bias is not None
    assert isinstance(backbone.act, paddle.nn.Identity)  # no ReLU after last_conv
    # With stride 1 the first stage-4 block gets the 1x1 branch too (kernels 5, 3, 1).
    assert [b.conv._kernel_size[0] for b in backbone.stages[3][0].dw_conv_list] == [5, 3, 1]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer_name", ["momentum", "adamw"])
def test_bnneck_bias_stays_zero_while_weight_trains(optimizer_name):
    paddle.seed(8)
    model = build_recognition_model(num_classes=10)
    neck = model.neck.feat_bn
    assert neck._momentum == pytest.approx(0.9) and neck._epsilon == pytest.approx(1e-5)
    assert np.all(neck.weight.numpy() == 1.0) and np.all(neck.bias.numpy() == 0.0)
    if optimizer_name == "momentum":
        optimizer = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, weight_decay=1e-2,
                                              parameters=model.parameters())
    else:
        optimizer = paddle.optimizer.AdamW(learning_rate=0.01, weight_decay=0.1,
                                           parameters=model.parameters())
    model.train()
    for step in range(2):
        out = model(paddle.randn([4, 3, 64, 64]))
        # squared features: the BN weight gets a real gradient (a plain mean would not)
        loss = paddle.nn.functional.cross_entropy(out["logits"], paddle.to_tensor([0, 1, 2, 3])) \
            + (out["features"] ** 2 * paddle.linspace(0, 1, 512)).mean()
        loss.backward()
        assert neck.weight.grad is not None  # a stop_gradient bias would drop this (Paddle 3.3)
        optimizer.step()
        optimizer.clear_grad()
    assert np.all(neck.bias.numpy() == 0.0)
    assert not np.allclose(neck.weight.numpy(), 1.0)


def test_rep_fusion_keeps_outputs():
    paddle.seed(11)
    model = build_recognition_model()
    randomise_batchnorm(model, seed=3)
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    before = model(x).numpy()
    reparameterize(model)
    blocks = [b for b in model.sublayers() if isinstance(b, RepDepthwiseSeparable) and b.use_rep]
    assert blocks and all(b.is_repped for b in blocks)
    after = model(x).numpy()
    assert np.abs(after - before).max() < 1e-4
    model.train()
    model(x)  # a training step makes the fused kernel stale again
    assert not any(b.is_repped for b in blocks)


def test_param_counts_against_published():
    classifier = pplcnetv2_base()
    count = deployed_params(classifier)
    # PPLCNetV2_base as published (1280-d last conv, 1000-way fc): within 10% of 6.6M.
    assert abs(count - PUBLISHED_PPLCNETV2_BASE_PARAMS) / PUBLISHED_PPLCNETV2_BASE_PARAMS < 0.10
    assert count == 6_640_488  # 6_841_192 while training (branches + fused conv)
    # The ShiTu recogniser drops the fc, shrinks last_conv to 512 (with bias) and adds
    # BNNeck, so it is smaller than the classifier: 4.58M deployed, 4.78M while training.
    recogniser = build_recognition_model()
    assert deployed_params(recogniser) == 4_575_616
    assert n_params(recogniser) == 4_778_880


def test_picodet_lcnet_1_5x_matches_published_size():
    count = n_params(PicoDet(scale=1.5, num_classes=80))
    assert abs(count - PUBLISHED_PICODET_LCNET_1_5X_PARAMS) / PUBLISHED_PICODET_LCNET_1_5X_PARAMS < 0.03


def test_picodet_shapes_and_eval_outputs():
    paddle.seed(5)
    detector = PicoDet(scale=0.5)
    detector.train()
    cls_list, reg_list = detector(paddle.randn([2, 3, 128, 128]))
    assert [c.shape for c in cls_list] == [[2, 1, 16, 16], [2, 1, 8, 8], [2, 1, 4, 4], [2, 1, 2, 2]]
    assert all(r.shape[1] == 4 * 8 for r in reg_list)  # reg_max 7 -> 8 bins per side
    detector.eval()
    bbox, bbox_num = detector(paddle.randn([1, 3, 128, 128]), paddle.to_tensor([[128.0, 128.0]]),
                              paddle.to_tensor([[1.0, 1.0]]))
    assert bbox.shape[-1] == 6 and bbox_num.shape == [1]


def _reference_decode(cls_list, reg_list, strides, im_shape, scale_factor, reg_max=7):
    """Straightforward numpy decode, written independently of the model's vectorised one."""
    boxes, scores = [], []
    for stride, cls_logits, reg_logits in zip(strides, cls_list, reg_list):
        _, _, height, width = cls_logits.shape
        for y in range(height):
            for x in range(width):
                logits = reg_logits[0, :, y, x].reshape(4, reg_max + 1)
                probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs /= probs.sum(axis=1, keepdims=True)
                left, top, right, bottom = (probs * np.arange(reg_max + 1)).sum(axis=1) * stride
                cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                box = np.array([cx - left, cy - top, cx + right, cy + bottom])
                box[[0, 2]] = np.clip(box[[0, 2]], 0, im_shape[1])
                box[[1, 3]] = np.clip(box[[1, 3]], 0, im_shape[0])
                boxes.append(box / np.array([scale_factor[1], scale_factor[0]] * 2))
                scores.append(1 / (1 + np.exp(-cls_logits[0, :, y, x])))
    return np.array(boxes), np.array(scores).T


def test_picodet_decode_matches_reference():
    paddle.seed(2)
    detector = PicoDet(scale=0.35, nms_pre=10_000)
    detector.eval()
    raw = detector.forward_raw(paddle.randn([1, 3, 64, 64]))
    raw = ([c * 3 for c in raw[0]], [r * 20 for r in raw[1]])  # spread the distributions
    im_shape, scale_factor = [64.0, 64.0], [0.5, 0.25]
    boxes, scores = detector.decode(raw, paddle.to_tensor([im_shape]), paddle.to_tensor([scale_factor]))
    ref_boxes, ref_scores = _reference_decode([c.numpy() for c in raw[0]], [r.numpy() for r in raw[1]],
                                              detector.fpn_stride, im_shape, scale_factor)
    np.testing.assert_allclose(boxes.numpy()[0], ref_boxes, atol=1e-3)
    np.testing.assert_allclose(scores.numpy()[0], ref_scores, atol=1e-5)


def test_picodet_top_k_per_level_keeps_best_anchors():
    paddle.seed(4)
    detector = PicoDet(scale=0.35, nms_pre=20)
    detector.eval()
    raw = detector.forward_raw(paddle.randn([2, 3, 64, 64]))
    shape = paddle.to_tensor([[64.0, 64.0]] * 2)
    boxes, scores = detector.decode(raw, shape, paddle.ones([2, 2]))
    # level 0 (8x8 = 64 anchors) is cut to 20; 16, 4 and 1 anchors stay whole
    assert boxes.shape == [2, 20 + 16 + 4 + 1, 4] and scores.shape == [2, 1, 41]
    best = paddle.nn.functional.sigmoid(raw[0][0]).flatten(1).max(axis=1).numpy()
    np.testing.assert_allclose(scores.numpy()[:, 0, :20].max(axis=1), best, rtol=1e-6)


def test_upsample_matches_nearest_interpolation():
    x = paddle.randn([2, 3, 5, 4])
    expected = paddle.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    np.testing.assert_array_equal(upsample_nearest_2x(x).numpy(), expected.numpy())
