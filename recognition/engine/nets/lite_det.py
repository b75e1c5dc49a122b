"""EfficientNet-Lite as a PP-PicoDet backbone: the stride-8/16/32 maps of an ImageNet-started network.

The mainbody detector trained from random weights on synthetic composites never learned what a product
on a shelf looks like; an ImageNet start already has. The maps are taken at the ends of the stages whose
widths are 40, 112 and 320 for Lite0 (strides 8, 16 and 32), the places PicoDet's LCNet gives its C3-C5.
The 1280-wide classification head of EfficientNet is not part of the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import paddle.nn as nn

from .efficientnet_lite import EfficientNetLite, LiteBlock


def stage_ends(blocks: Sequence[LiteBlock], strides: Sequence[int] = (8, 16, 32)) -> list[int]:
    """Index of the last block of the last stage at each wanted output stride."""
    ends: dict[int, int] = {}
    stride = 2  # the stem halves the input
    for index, block in enumerate(blocks):
        stride *= block.stride
        ends[stride] = index
    missing = [s for s in strides if s not in ends]
    if missing:
        raise ValueError(f"the block table reaches no stride {missing}")
    return [ends[s] for s in strides]


class LiteDetBackbone(nn.Layer):
    """Input adapter, stem and blocks of an EfficientNet-Lite network, returning the maps at ``strides``."""

    def __init__(self, features: EfficientNetLite, strides: Sequence[int] = (8, 16, 32)):
        super().__init__()
        specs = list(features.block_specs)
        self.ends = stage_ends(specs, strides)
        self.adapter = features.adapter
        self.stem = features.stem
        self.blocks = nn.LayerList(list(features.blocks)[: self.ends[-1] + 1])
        self.out_channels = [specs[i].out_channels for i in self.ends]
        self.strides = tuple(strides)

    def forward(self, x):
        x = self.stem(self.adapter(x))
        outs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.ends:
                outs.append(x)
        return outs


__all__ = ["LiteDetBackbone", "stage_ends"]
