"""PP-PicoDet (2021 "legacy" design used by the PP-ShiTu mainbody detector).

LCNet backbone (C3-C5) -> CSP-PAN (1x1 to ``neck_channels``, depthwise 5x5, one extra
top level: strides 8/16/32/64) -> PicoHead (per level: 4 x [dw 5x5 + pw 1x1] shared by
classification and regression, one 1x1 conv predicting ``num_classes + 4*(reg_max+1)``).

In eval mode ``forward(image, im_shape, scale_factor)`` decodes (distribution integral,
centre priors at ``(i + 0.5) * stride``, per-level top-1000, clip to ``im_shape``, divide
by ``scale_factor``) and runs Paddle's ``multiclass_nms3`` inside the graph, returning
PaddleDetection's exported interface: ``bbox [M, 6]`` rows ``(class, score, x1, y1, x2,
y2)`` in original-image pixels and ``bbox_num [N]``. Sublayer names follow
PaddleDetection so its dygraph checkpoints load with ``set_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, KaimingUniform, Normal
from paddle.regularizer import L2Decay

from .lcnet import LCNet


def _act(x, name: str):
    if name == "hard_swish":
        return F.hardswish(x)
    if name == "leaky_relu":
        return F.leaky_relu(x)
    raise ValueError(f"unsupported activation {name!r}")


def upsample_nearest_2x(x):
    """Nearest 2x upsampling via broadcast + reshape.

    Same values as ``F.interpolate(x, scale_factor=2, mode="nearest")``, but Paddle 3.3's
    oneDNN executor cannot run a PIR ``nearest_interp`` op (``ConvertPirAttribute2Runtime
    Attribute ... ArrayAttribute<DoubleAttribute>``), which would force oneDNN off for the
    whole exported detector.
    """
    _, channels, height, width = x.shape
    if height < 0 or width < 0:  # dynamic spatial shape: no static reshape target
        return F.interpolate(x, scale_factor=2, mode="nearest")
    x = x.unsqueeze([3, 5]).expand([-1, -1, -1, 2, -1, 2])
    return x.reshape([-1, channels, height * 2, width * 2])


class ConvBNLayer(nn.Layer):
    """CSP-PAN conv + BN + activation."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, act: str = "hard_swish"):
        super().__init__()
        self.act = act
        self.conv = nn.Conv2D(in_channel, out_channel, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups,
                              weight_attr=ParamAttr(initializer=KaimingUniform()),
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channel)

    def forward(self, x):
        return _act(self.bn(self.conv(x)), self.act)


class DPModule(nn.Layer):
    """Depthwise kxk + BN + act, then pointwise 1x1 + BN + act."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int = 3,
                 stride: int = 1, act: str = "hard_swish"):
        super().__init__()
        self.act = act
        init = ParamAttr(initializer=KaimingUniform())
        self.dwconv = nn.Conv2D(in_channel, out_channel, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, groups=out_channel,
                                weight_attr=init, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(out_channel)
        self.pwconv = nn.Conv2D(out_channel, out_channel, 1, weight_attr=init,
                                bias_attr=False)
        self.bn2 = nn.BatchNorm2D(out_channel)

    def forward(self, x):
        x = _act(self.bn1(self.dwconv(x)), self.act)
        return _act(self.bn2(self.pwconv(x)), self.act)


class DarknetBottleneck(nn.Layer):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 expansion: float = 0.5, add_identity: bool = True,
                 use_depthwise: bool = False, act: str = "hard_swish"):
        super().__init__()
        hidden = int(out_channels * expansion)
        second = DPModule if use_depthwise else ConvBNLayer
        self.conv1 = ConvBNLayer(in_channels, hidden, 1, act=act)
        self.conv2 = second(hidden, out_channels, kernel_size, stride=1, act=act)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Layer):
    """Cross-stage-partial layer: two 1x1 branches, bottlenecks on one, concat, 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 expand_ratio: float = 0.5, num_blocks: int = 1, add_identity: bool = True,
                 use_depthwise: bool = False, act: str = "hard_swish"):
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvBNLayer(in_channels, mid, 1, act=act)
        self.short_conv = ConvBNLayer(in_channels, mid, 1, act=act)
        self.final_conv = ConvBNLayer(2 * mid, out_channels, 1, act=act)
        self.blocks = nn.Sequential(*[
            DarknetBottleneck(mid, mid, kernel_size, 1.0, add_identity, use_depthwise, act=act)
            for _ in range(num_blocks)
        ])

    def forward(self, x):
        main = self.blocks(self.main_conv(x))
        return self.final_conv(paddle.concat([main, self.short_conv(x)], axis=1))


class ChannelT(nn.Layer):
    """1x1 conv per input level to a common width."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, act: str = "hard_swish"):
        super().__init__()
        self.convs = nn.LayerList([ConvBNLayer(c, out_channels, 1, act=act) for c in in_channels])

    def forward(self, feats):
        return [conv(feat) for conv, feat in zip(self.convs, feats)]


class CSPPAN(nn.Layer):
    """Path aggregation network with CSP blocks; ``num_features=4`` adds a stride-64 level."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 128,
                 kernel_size: int = 5, num_features: int = 4, num_csp_blocks: int = 1,
                 use_depthwise: bool = True, act: str = "hard_swish"):
        super().__init__()
        self.conv_t = ChannelT(in_channels, out_channels, act=act)
        levels = len(in_channels)
        self.num_levels = levels
        self.out_channels = out_channels
        self.num_features = num_features
        conv = DPModule if use_depthwise else ConvBNLayer
        if num_features == levels + 1:
            self.first_top_conv = conv(out_channels, out_channels, kernel_size, stride=2, act=act)
            self.second_top_conv = conv(out_channels, out_channels, kernel_size, stride=2, act=act)
        elif num_features != levels:
            raise ValueError("num_features must equal the input levels or exceed them by one")
        self.top_down_blocks = nn.LayerList([
            CSPLayer(out_channels * 2, out_channels, kernel_size, num_blocks=num_csp_blocks,
                     add_identity=False, use_depthwise=use_depthwise, act=act)
            for _ in range(levels - 1)
        ])
        self.downsamples = nn.LayerList([
            conv(out_channels, out_channels, kernel_size, stride=2, act=act)
            for _ in range(levels - 1)
        ])
        self.bottom_up_blocks = nn.LayerList([
            CSPLayer(out_channels * 2, out_channels, kernel_size, num_blocks=num_csp_blocks,
                     add_identity=False, use_depthwise=use_depthwise, act=act)
            for _ in range(levels - 1)
        ])

    def forward(self, feats):
        feats = self.conv_t(feats)
        levels = self.num_levels
        inner = [feats[-1]]
        for idx in range(levels - 1, 0, -1):
            upsampled = upsample_nearest_2x(inner[0])
            block = self.top_down_blocks[levels - 1 - idx]
            inner.insert(0, block(paddle.concat([upsampled, feats[idx - 1]], axis=1)))
        outs = [inner[0]]
        for idx in range(levels - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](paddle.concat([down, inner[idx + 1]], axis=1)))
        if self.num_features == levels + 1:
            outs.append(self.first_top_conv(feats[-1]) + self.second_top_conv(outs[-1]))
        return outs


class ConvNormLayer(nn.Layer):
    """Head conv (Normal 0.01, no bias) + BN without weight decay."""

    def __init__(self, ch_in: int, ch_out: int, filter_size: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(ch_in, ch_out, filter_size, padding=(filter_size - 1) // 2,
                              groups=groups,
                              weight_attr=ParamAttr(initializer=Normal(0.0, 0.01)),
                              bias_attr=False)
        self.norm = nn.BatchNorm2D(ch_out,
                                   weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
                                   bias_attr=ParamAttr(regularizer=L2Decay(0.0)))

    def forward(self, x):
        return self.norm(self.conv(x))


class PicoFeat(nn.Layer):
    """Per level: ``num_convs`` x (dw 5x5 + act, pw 1x1 + act), shared by cls and reg."""

    def __init__(self, feat_in: int = 128, feat_out: int = 128, num_fpn_stride: int = 4,
                 num_convs: int = 4, act: str = "hard_swish"):
        super().__init__()
        self.act = act
        self.cls_convs: list[list[nn.Layer]] = []
        for level in range(num_fpn_stride):
            convs = []
            for i in range(num_convs):
                in_c = feat_in if i == 0 else feat_out
                convs.append(self.add_sublayer(f"cls_conv_dw{level}.{i}",
                                               ConvNormLayer(in_c, feat_out, 5, groups=feat_out)))
                convs.append(self.add_sublayer(f"cls_conv_pw{level}.{i}",
                                               ConvNormLayer(in_c, feat_out, 1)))
            self.cls_convs.append(convs)

    def forward(self, x, level: int):
        for conv in self.cls_convs[level]:
            x = _act(conv(x), self.act)
        return x


class PicoHead(nn.Layer):
    """Shared cls/reg branch and one 1x1 predictor per level (sigmoid scores, DFL boxes)."""

    def __init__(self, num_classes: int = 1, feat_in: int = 128, fpn_stride=(8, 16, 32, 64),
                 num_convs: int = 4, reg_max: int = 7, prior_prob: float = 0.01,
                 act: str = "hard_swish"):
        super().__init__()
        self.num_classes = num_classes
        self.fpn_stride = tuple(fpn_stride)
        self.reg_max = reg_max
        self.conv_feat = PicoFeat(feat_in, feat_in, len(fpn_stride), num_convs, act=act)
        bias_init = -math.log((1 - prior_prob) / prior_prob)
        self.head_cls_list = []
        for level in range(len(fpn_stride)):
            self.head_cls_list.append(self.add_sublayer(
                f"head_cls{level}",
                nn.Conv2D(feat_in, num_classes + 4 * (reg_max + 1), 1,
                          weight_attr=ParamAttr(initializer=Normal(0.0, 0.01)),
                          bias_attr=ParamAttr(initializer=Constant(bias_init)))))

    def forward(self, feats):
        """Per level ``(cls_logits [N,C,H,W], reg_logits [N,4*(reg_max+1),H,W])``."""
        cls_out, reg_out = [], []
        for level, feat in enumerate(feats):
            pred = self.head_cls_list[level](self.conv_feat(feat, level))
            cls_logits, reg_logits = paddle.split(
                pred, [self.num_classes, 4 * (self.reg_max + 1)], axis=1)
            cls_out.append(cls_logits)
            reg_out.append(reg_logits)
        return cls_out, reg_out


class PicoDet(nn.Layer):
    """PP-PicoDet detector; eval-mode forward includes decode + multi-class NMS."""

    def __init__(self, scale: float = 2.5, num_classes: int = 1, neck_channels: int = 128,
                 num_features: int = 4, fpn_stride=(8, 16, 32, 64), num_convs: int = 4,
                 reg_max: int = 7, cell_offset: float = 0.5, nms_pre: int = 1000,
                 score_threshold: float = 0.025, nms_threshold: float = 0.6,
                 nms_top_k: int = 1000, keep_top_k: int = 100, export_nms: bool = True,
                 backbone: nn.Layer | None = None):
        super().__init__()
        # Any backbone with ``out_channels`` and three maps at strides 8/16/32 fits (see lite_det.py).
        self.backbone = backbone if backbone is not None else LCNet(scale=scale, feature_maps=(3, 4, 5))
        self.neck = CSPPAN(self.backbone.out_channels, neck_channels,
                           num_features=num_features)
        self.head = PicoHead(num_classes, neck_channels, fpn_stride, num_convs, reg_max)
        self.num_classes = num_classes
        self.fpn_stride = tuple(fpn_stride)
        self.reg_max = reg_max
        self.cell_offset = cell_offset
        self.nms_pre = nms_pre
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.nms_top_k = nms_top_k
        self.keep_top_k = keep_top_k
        self.export_nms = export_nms

    def forward_raw(self, image):
        return self.head(self.neck(self.backbone(image)))

    def forward(self, image, im_shape=None, scale_factor=None):
        """Training: raw per-level logits. Eval: ``(bbox [M,6], bbox_num [N])``, or
        ``(boxes [N,A,4], scores [N,C,A])`` when built with ``export_nms=False``."""
        raw = self.forward_raw(image)
        if self.training:
            return raw
        if im_shape is None:
            im_shape = paddle.to_tensor([image.shape[2:]], dtype="float32")
        if scale_factor is None:
            scale_factor = paddle.ones([1, 2], dtype="float32")
        boxes, scores = self.decode(raw, im_shape, scale_factor)
        if not self.export_nms:
            return boxes, scores
        return multiclass_nms(boxes, scores, score_threshold=self.score_threshold,
                              nms_top_k=self.nms_top_k, keep_top_k=self.keep_top_k,
                              nms_threshold=self.nms_threshold)

    def decode(self, raw, im_shape, scale_factor):
        """Boxes ``[N, A, 4]`` (x1, y1, x2, y2) in original pixels and scores ``[N, C, A]``."""
        cls_list, reg_list = raw
        project = paddle.arange(self.reg_max + 1, dtype="float32")
        # im_shape / scale_factor are (h, w) / (scale_y, scale_x) per image.
        max_xy = paddle.flip(im_shape, axis=[1]).unsqueeze(1)          # [N, 1, 2]
        scale_xyxy = paddle.tile(paddle.flip(scale_factor, axis=[1]), [1, 2]).unsqueeze(1)
        all_boxes, all_scores = [], []
        for stride, cls_logits, reg_logits in zip(self.fpn_stride, cls_list, reg_list):
            height, width = cls_logits.shape[2], cls_logits.shape[3]
            scores = F.sigmoid(cls_logits).flatten(2).transpose([0, 2, 1])           # [N, HW, C]
            reg = reg_logits.flatten(2).transpose([0, 2, 1])                        # [N, HW, 4(R+1)]
            reg = reg.reshape([0, 0, 4, self.reg_max + 1])
            distances = (F.softmax(reg, axis=-1) * project).sum(-1) * stride        # [N, HW, 4]
            ys = (paddle.arange(height, dtype="float32") + self.cell_offset) * stride
            xs = (paddle.arange(width, dtype="float32") + self.cell_offset) * stride
            grid_y, grid_x = paddle.meshgrid(ys, xs)
            centers = paddle.stack([grid_x.flatten(), grid_y.flatten()], axis=-1)  # [HW, 2]
            if height * width > self.nms_pre:
                _, keep = paddle.topk(scores.max(axis=-1), self.nms_pre, axis=1)   # [N, K]
                scores = paddle.take_along_axis(scores, keep.unsqueeze(-1), axis=1)
                distances = paddle.take_along_axis(distances, keep.unsqueeze(-1), axis=1)
                centers = paddle.gather(centers, keep.flatten()).reshape([-1, self.nms_pre, 2])
            else:
                centers = centers.unsqueeze(0)
            top_left = paddle.maximum(centers - distances[:, :, :2], paddle.zeros([1], "float32"))
            bottom_right = centers + distances[:, :, 2:]
            top_left = paddle.minimum(top_left, max_xy)
            bottom_right = paddle.minimum(bottom_right, max_xy)
            all_boxes.append(paddle.concat([top_left, bottom_right], axis=-1))
            all_scores.append(scores)
        boxes = paddle.concat(all_boxes, axis=1) / scale_xyxy
        scores = paddle.concat(all_scores, axis=1).transpose([0, 2, 1])
        return boxes, scores


def multiclass_nms(boxes, scores, *, score_threshold: float, nms_top_k: int, keep_top_k: int,
                   nms_threshold: float):
    """Paddle's ``multiclass_nms3`` (as PaddleDetection exports it): ``(bbox [M,6], bbox_num)``.

    ``normalized=True`` (no "+1" in areas) and no background class (sigmoid scores). The
    legacy-static branch only serves exports to ``.pdmodel`` with ``FLAGS_enable_pir_api=0``.
    """
    from paddle.framework import in_dynamic_or_pir_mode

    if in_dynamic_or_pir_mode():
        bbox, _, bbox_num = paddle._C_ops.multiclass_nms3(
            boxes, scores, None, score_threshold, nms_top_k, keep_top_k, nms_threshold,
            True, 1.0, -1)
        return bbox, bbox_num
    from paddle.base.layer_helper import LayerHelper

    helper = LayerHelper("multiclass_nms3")
    bbox = helper.create_variable_for_type_inference(dtype=boxes.dtype)
    index = helper.create_variable_for_type_inference(dtype="int32")
    bbox_num = helper.create_variable_for_type_inference(dtype="int32")
    helper.append_op(
        type="multiclass_nms3", inputs={"BBoxes": boxes, "Scores": scores},
        attrs={"background_label": -1, "score_threshold": score_threshold,
               "nms_top_k": nms_top_k, "nms_threshold": nms_threshold,
               "keep_top_k": keep_top_k, "nms_eta": 1.0, "normalized": True},
        outputs={"Out": bbox, "Index": index, "NmsRoisNum": bbox_num})
    bbox.stop_gradient = True
    bbox_num.stop_gradient = True
    return bbox, bbox_num


def picodet_mainbody(scale: float = 2.5, **kwargs) -> PicoDet:
    """The PP-ShiTu mainbody detector layout: LCNet x2.5, one class "foreground"."""
    return PicoDet(scale=scale, num_classes=1, **kwargs)
