"""Classification head used only while training the feature extractor."""

from __future__ import annotations

import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Normal


class FC(nn.Layer):
    """Linear ``embedding_size -> class_num``, weight Normal(0, 0.001), no bias."""

    def __init__(self, embedding_size: int, class_num: int, std: float = 0.001):
        super().__init__()
        self.embedding_size = embedding_size
        self.class_num = class_num
        self.fc = nn.Linear(embedding_size, class_num,
                            weight_attr=ParamAttr(initializer=Normal(mean=0.0, std=std)),
                            bias_attr=False)

    def forward(self, x):
        return self.fc(x)
