"""EfficientNet-Lite as a ShiTu backbone: ImageNet weights start it, BNNeck and the losses stay.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 and a fixed stem (32) and
head (1280). Its block table is read from a checkpoint's shapes (see ``LiteBlock.from_shapes``
in the training importer), so Lite0, Lite1 and Lite2 are one class.

Two details decide whether imported weights mean what they meant in TensorFlow:
- "same" padding: where the padding is odd, the extra pixel goes right/bottom. Inputs whose
  sides are multiples of 32 keep every strided convolution's input even, so the padding of
  each convolution is a constant and exports as an ordinary padded conv.
- input scale: the checkpoint expects ``(x - 127) / 128`` on 0-255 pixels. The platform feeds
  every extractor ImageNet mean/std-normalised crops, so the network's first op maps one to the
  other (a fixed per-channel multiply-add), and nothing around the model needs to know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99   # torch's momentum 0.01
STEM_WIDTH = 32
HEAD_WIDTH = 1280


@dataclass(frozen=True)
class LiteBlock:
    """One inverted-residual block: ``expand`` 1 means no expansion convolution."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: int


# EfficientNet-B0's stage strides; a new stage starts where the output width changes.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def blocks_from_widths(stem: int, rows: Sequence[tuple[int, int, int]]) -> list[LiteBlock]:
    """Block table from ``(expanded_width, kernel, out_width)`` per block, strides by stage."""
    blocks, in_ch, stage, last_out = [], stem, -1, None
    for expanded, kernel, out_ch in rows:
        first = out_ch != last_out
        if first:
            stage += 1
        if stage >= len(STAGE_STRIDES):
            raise ValueError(f"more than {len(STAGE_STRIDES)} stages in the block table")
        expand = expanded // in_ch
        if expand * in_ch != expanded:
            raise ValueError(f"expanded width {expanded} is not a multiple of {in_ch}")
        blocks.append(LiteBlock(in_ch, out_ch, kernel, STAGE_STRIDES[stage] if first else 1, expand))
        in_ch, last_out = out_ch, out_ch
    return blocks


def _same_padding(kernel: int, stride: int) -> list[int]:
    """TF "same" padding for an even input side: ``[top, bottom, left, right]``."""
    total = max(kernel - stride, 0)
    before = total // 2
    return [before, total - before, before, total - before]


class ConvBN(nn.Layer):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=_same_padding(kernel, stride),
                              groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_ch, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Layer):
    def __init__(self, spec: LiteBlock):
        super().__init__()
        hidden = spec.in_channels * spec.expand
        self.expand = ConvBN(spec.in_channels, hidden) if spec.expand != 1 else None
        self.depthwise = ConvBN(hidden, hidden, spec.kernel, spec.stride, groups=hidden)
        self.project = ConvBN(hidden, spec.out_channels, act=False)
        self.residual = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x):
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class InputAdapter(nn.Layer):
    """ImageNet mean/std input -> ``(pixel - 127) / 128``, one per-channel multiply-add."""

    def __init__(self):
        super().__init__()
        std = paddle.to_tensor(IMAGENET_STD, dtype="float32").reshape([1, 3, 1, 1])
        mean = paddle.to_tensor(IMAGENET_MEAN, dtype="float32").reshape([1, 3, 1, 1])
        self.register_buffer("scale", std * 255.0 / 128.0, persistable=False)
        self.register_buffer("shift", (mean * 255.0 - 127.0) / 128.0, persistable=False)

    def forward(self, x):
        return x * self.scale + self.shift


class GeM(nn.Layer):
    """Generalised-mean pooling with a fixed ``p`` (3 is the retrieval literature's default)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = float(p)
        self.eps = eps

    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(paddle.clip(x, min=self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p).flatten(1)


class EfficientNetLite(nn.Layer):
    """The Lite feature network up to the 1280-d head activation (no classifier)."""

    def __init__(self, blocks: Sequence[LiteBlock], *, stem: int = STEM_WIDTH, head: int = HEAD_WIDTH):
        super().__init__()
        self.block_specs = tuple(blocks)
        self.adapter = InputAdapter()
        self.stem = ConvBN(3, stem, 3, 2)
        self.blocks = nn.LayerList([MBConv(spec) for spec in self.block_specs])
        self.head = ConvBN(self.block_specs[-1].out_channels, head)
        self.out_channels = head

    def forward_to(self, x, stop: int):
        """Activations after block ``stop - 1`` (for feature caches and detector necks)."""
        x = self.stem(self.adapter(x))
        for block in self.blocks[:stop]:
            x = block(x)
        return x

    def forward_from(self, x, start: int):
        for block in self.blocks[start:]:
            x = block(x)
        return self.head(x)

    def forward(self, x):
        return self.forward_from(self.forward_to(x, 0), 0)


class EfficientNetLiteShiTu(nn.Layer):
    """Lite backbone + GeM + a linear embedding: the ``[N, feature_dim]`` the BNNeck takes."""

    def __init__(self, features: EfficientNetLite, *, feature_dim: int = 512, gem_p: float = 3.0):
        super().__init__()
        self.features = features
        self.pool = GeM(gem_p)
        self.embedding = nn.Linear(self.features.out_channels, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x):
        return self.embedding(self.pool(self.features(x)))


# EfficientNet-Lite0 (EfficientNet-B0's table without SE): (expanded width, kernel, out width).
LITE0_ROWS = ((32, 3, 16), (96, 3, 24), (144, 3, 24), (144, 5, 40), (240, 5, 40), (240, 3, 80),
              (480, 3, 80), (480, 3, 80), (480, 5, 112), (672, 5, 112), (672, 5, 112), (672, 5, 192),
              (1152, 5, 192), (1152, 5, 192), (1152, 5, 192), (1152, 3, 320))


def lite0_blocks() -> list[LiteBlock]:
    return blocks_from_widths(STEM_WIDTH, LITE0_ROWS)


__all__ = ["EfficientNetLite", "EfficientNetLiteShiTu", "GeM", "LITE0_ROWS", "LiteBlock", "MBConv",
           "blocks_from_widths", "lite0_blocks"]
