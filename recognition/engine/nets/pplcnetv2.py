"""PP-LCNetV2 backbone and its PP-ShiTuV2 variant (the 512-d feature extractor).

Sublayer names follow PaddleClas (``stem``, ``stages``, ``dw_conv_list``, ``dw_conv``,
``se``, ``pw_conv``/``pw_conv_1``/``pw_conv_2``, ``last_conv``, ``fc``) so that a
PaddleClas dygraph checkpoint (e.g. the ImageNet ``PPLCNetV2_base`` weights) loads with
``set_state_dict`` as a fine-tuning start.
"""

from __future__ import annotations

from collections.abc import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import KaimingNormal
from paddle.regularizer import L2Decay

# Per stage: base channels, depthwise kernel, split pointwise, multi-kernel rep, SE, shortcut.
STAGE_CONFIG: tuple[tuple[int, int, bool, bool, bool, bool], ...] = (
    (64, 3, False, False, False, False),
    (128, 3, False, False, False, False),
    (256, 5, True, True, True, False),
    (512, 5, False, True, False, True),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNLayer(nn.Layer):
    """Conv (no bias) + BatchNorm (no weight decay) + optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, use_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=(kernel_size - 1) // 2, groups=groups,
            weight_attr=ParamAttr(initializer=KaimingNormal()), bias_attr=False)
        self.bn = nn.BatchNorm2D(
            out_channels,
            weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
            bias_attr=ParamAttr(regularizer=L2Decay(0.0)))
        self.act = nn.ReLU() if use_act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SEModule(nn.Layer):
    """Squeeze-and-excitation; PP-LCNetV2 gates with a plain sigmoid."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        gate = self.sigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return x * gate


class RepDepthwiseSeparable(nn.Layer):
    """Depthwise (optionally several kernels summed) + SE + pointwise block.

    With ``use_rep`` the depthwise part is a sum of BN'd depthwise convs of kernel
    ``dw_size, dw_size-2, ..., 1`` (the 1x1 only at stride 1). ``rep()`` folds them into
    the single biased ``dw_conv``; after that, eval-mode forward uses the fused conv and
    the first training-mode forward marks the fusion stale again.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dw_size: int = 3,
                 split_pw: bool = False, use_rep: bool = False, use_se: bool = False,
                 use_shortcut: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.dw_size = dw_size
        self.split_pw = split_pw
        self.use_rep = use_rep
        self.use_se = use_se
        self.use_shortcut = use_shortcut and stride == 1 and in_channels == out_channels
        self.is_repped = False

        if use_rep:
            self.dw_conv_list = nn.LayerList([
                ConvBNLayer(in_channels, in_channels, kernel, stride, groups=in_channels,
                            use_act=False)
                for kernel in range(dw_size, 0, -2)
                if not (kernel == 1 and stride != 1)
            ])
            # Holds the fused kernel after rep(); unused (no gradient) while training.
            self.dw_conv = nn.Conv2D(in_channels, in_channels, dw_size, stride=stride,
                                     padding=(dw_size - 1) // 2, groups=in_channels)
            self.act = nn.ReLU()
        else:
            self.dw_conv = ConvBNLayer(in_channels, in_channels, dw_size, stride,
                                       groups=in_channels)

        if use_se:
            self.se = SEModule(in_channels)

        if split_pw:
            half = int(out_channels * 0.5)
            self.pw_conv_1 = ConvBNLayer(in_channels, half, 1, 1)
            self.pw_conv_2 = ConvBNLayer(half, out_channels, 1, 1)
        else:
            self.pw_conv = ConvBNLayer(in_channels, out_channels, 1, 1)

    def forward(self, x):
        identity = x
        if self.use_rep:
            if self.training:
                self.is_repped = False
            if self.is_repped:
                x = self.act(self.dw_conv(x))
            else:
                y = self.dw_conv_list[0](x)
                for branch in self.dw_conv_list[1:]:
                    y = y + branch(x)
                x = self.act(y)
        else:
            x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        if self.split_pw:
            x = self.pw_conv_2(self.pw_conv_1(x))
        else:
            x = self.pw_conv(x)
        if self.use_shortcut:
            x = x + identity
        return x

    @paddle.no_grad()
    def rep(self) -> None:
        """Fold every depthwise branch and its BN into ``dw_conv`` (uses BN running stats)."""
        if not self.use_rep:
            return
        kernel_sum, bias_sum = None, None
        for branch in self.dw_conv_list:
            bn = branch.bn
            std = paddle.sqrt(bn._variance + bn._epsilon)
            scale = bn.weight / std
            kernel = branch.conv.weight * scale.reshape([-1, 1, 1, 1])
            bias = bn.bias - bn._mean * scale
            pad = (self.dw_size - kernel.shape[-1]) // 2
            if pad:
                kernel = F.pad(kernel, [pad, pad, pad, pad])
            kernel_sum = kernel if kernel_sum is None else kernel_sum + kernel
            bias_sum = bias if bias_sum is None else bias_sum + bias
        self.dw_conv.weight.set_value(kernel_sum)
        self.dw_conv.bias.set_value(bias_sum)
        self.is_repped = True


class PPLCNetV2(nn.Layer):
    """PP-LCNetV2 classifier/feature backbone.

    ``last_stride=1`` keeps stage 4 at stride 16; ``last_conv_bias``/``last_act`` and
    ``with_fc`` select the ShiTu variant (biased ``last_conv``, no ReLU, no classifier).
    ``dropout_mode`` defaults to PaddleClas' ``downscale_in_infer`` (eval output scaled by
    ``1 - dropout_prob``) so PaddleClas-trained weights give PaddleClas' features.
    """

    def __init__(self, scale: float = 1.0, depths: Sequence[int] = (2, 2, 6, 2),
                 class_num: int = 1000, dropout_prob: float = 0.2, use_last_conv: bool = True,
                 class_expand: int = 1280, last_stride: int = 2, last_conv_bias: bool = False,
                 last_act: bool = True, with_fc: bool = True,
                 dropout_mode: str = "downscale_in_infer"):
        super().__init__()
        self.scale = scale
        self.use_last_conv = use_last_conv
        self.class_expand = class_expand

        stem_out = make_divisible(32 * scale)
        self.stem = nn.Sequential(
            ConvBNLayer(3, stem_out, 3, 2),
            RepDepthwiseSeparable(stem_out, make_divisible(64 * scale), stride=1, dw_size=3),
        )
        self.stages = nn.LayerList()
        for stage_idx, (base, kernel, split_pw, use_rep, use_se, use_shortcut) in enumerate(
                STAGE_CONFIG):
            first_stride = last_stride if stage_idx == len(STAGE_CONFIG) - 1 else 2
            blocks = [
                RepDepthwiseSeparable(
                    make_divisible((base if i == 0 else base * 2) * scale),
                    make_divisible(base * 2 * scale),
                    stride=first_stride if i == 0 else 1,
                    dw_size=kernel, split_pw=split_pw, use_rep=use_rep, use_se=use_se,
                    use_shortcut=use_shortcut)
                for i in range(depths[stage_idx])
            ]
            self.stages.append(nn.Sequential(*blocks))

        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        out_channels = make_divisible(STAGE_CONFIG[-1][0] * 2 * scale)
        if use_last_conv:
            self.last_conv = nn.Conv2D(out_channels, class_expand, 1,
                                       bias_attr=None if last_conv_bias else False)
            self.act = nn.ReLU() if last_act else nn.Identity()
            self.dropout = nn.Dropout(p=dropout_prob, mode=dropout_mode)
            out_channels = class_expand
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.out_channels = out_channels
        self.fc = nn.Linear(out_channels, class_num) if with_fc else None

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.avg_pool(x)
        if self.use_last_conv:
            x = self.dropout(self.act(self.last_conv(x)))
        x = self.flatten(x)
        if self.fc is not None:
            x = self.fc(x)
        return x


def pplcnetv2_base(**kwargs) -> PPLCNetV2:
    """The ImageNet classifier PPLCNetV2_base (scale 1.0, depths 2/2/6/2)."""
    return PPLCNetV2(scale=1.0, depths=(2, 2, 6, 2), **kwargs)


def pplcnetv2_base_shitu(feature_dim: int = 512, **kwargs) -> PPLCNetV2:
    """PPLCNetV2_base_ShiTu: stage-4 stride 1, biased last_conv to ``feature_dim``, no ReLU, no fc."""
    options = dict(class_expand=feature_dim, last_stride=1, last_conv_bias=True,
                   last_act=False, with_fc=False)
    options.update(kwargs)
    return pplcnetv2_base(**options)


def reparameterize(layer: nn.Layer) -> nn.Layer:
    """Fuse every re-parameterisable block in ``layer`` (call in eval mode before export)."""
    for sublayer in layer.sublayers(include_self=True):
        if isinstance(sublayer, RepDepthwiseSeparable):
            sublayer.rep()
    return layer
