"""PP-LCNet (v1) backbone as PaddleDetection uses it for PP-PicoDet (multi-scale outputs)."""

from __future__ import annotations

from collections.abc import Sequence

import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import KaimingNormal
from paddle.regularizer import L2Decay

from .pplcnetv2 import make_divisible

# Per block: kernel, in channels, out channels, stride, SE (channels before scaling).
BLOCK_CONFIG: dict[str, tuple[tuple[int, int, int, int, bool], ...]] = {
    "blocks2": ((3, 16, 32, 1, False),),
    "blocks3": ((3, 32, 64, 2, False), (3, 64, 64, 1, False)),
    "blocks4": ((3, 64, 128, 2, False), (3, 128, 128, 1, False)),
    "blocks5": ((3, 128, 256, 2, False),) + ((5, 256, 256, 1, False),) * 5,
    "blocks6": ((5, 256, 512, 2, True), (5, 512, 512, 1, True)),
}


def _activation(name: str) -> nn.Layer:
    if name == "hard_swish":
        return nn.Hardswish()
    if name == "relu6":
        return nn.ReLU6()
    raise ValueError(f"unsupported activation {name!r}")


class ConvBNLayer(nn.Layer):
    """Conv (no bias) + BatchNorm + activation."""

    def __init__(self, num_channels: int, filter_size: int, num_filters: int, stride: int,
                 num_groups: int = 1, act: str = "hard_swish"):
        super().__init__()
        self.conv = nn.Conv2D(
            num_channels, num_filters, filter_size, stride=stride,
            padding=(filter_size - 1) // 2, groups=num_groups,
            weight_attr=ParamAttr(initializer=KaimingNormal()), bias_attr=False)
        self.bn = nn.BatchNorm2D(
            num_filters,
            weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
            bias_attr=ParamAttr(regularizer=L2Decay(0.0)))
        self.act = _activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SEModule(nn.Layer):
    """Squeeze-and-excitation with a hard-sigmoid gate (PP-LCNet v1)."""

    def __init__(self, channel: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channel, channel // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channel // reduction, channel, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


class DepthwiseSeparable(nn.Layer):
    def __init__(self, num_channels: int, num_filters: int, stride: int, dw_size: int = 3,
                 use_se: bool = False, act: str = "hard_swish"):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = ConvBNLayer(num_channels, dw_size, num_channels, stride,
                                   num_groups=num_channels, act=act)
        if use_se:
            self.se = SEModule(num_channels)
        self.pw_conv = ConvBNLayer(num_channels, 1, num_filters, 1, act=act)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        return self.pw_conv(x)


class LCNet(nn.Layer):
    """PP-LCNet returning the feature maps listed in ``feature_maps``.

    Indices follow PaddleDetection: 2..5 are the outputs of blocks3..blocks6 (strides
    4, 8, 16, 32); PicoDet uses ``(3, 4, 5)`` (strides 8/16/32).
    """

    def __init__(self, scale: float = 1.0, feature_maps: Sequence[int] = (3, 4, 5),
                 act: str = "hard_swish"):
        super().__init__()
        self.scale = scale
        self.feature_maps = tuple(feature_maps)
        self.conv1 = ConvBNLayer(3, 3, make_divisible(16 * scale), 2, act=act)
        stage_channels = []
        for name, config in BLOCK_CONFIG.items():
            blocks = [
                DepthwiseSeparable(make_divisible(in_c * scale), make_divisible(out_c * scale),
                                   stride, dw_size=kernel, use_se=se, act=act)
                for kernel, in_c, out_c, stride, se in config
            ]
            setattr(self, name, nn.Sequential(*blocks))
            stage_channels.append(make_divisible(config[-1][2] * scale))
        # stage_channels[0] is blocks2 (index 1); outputs are indexed from blocks3 = 2.
        self.out_channels = [stage_channels[index - 1] for index in self.feature_maps]

    def forward(self, x):
        x = self.blocks2(self.conv1(x))
        x3 = self.blocks3(x)
        x4 = self.blocks4(x3)
        x5 = self.blocks5(x4)
        x6 = self.blocks6(x5)
        # Plain code (no loops over names) keeps dygraph-to-static conversion trivial.
        stages = {2: x3, 3: x4, 4: x5, 5: x6}
        return [stages[index] for index in self.feature_maps]
