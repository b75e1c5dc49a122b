"""BNNeck: the BatchNorm1D between the backbone's 512-d output and the loss heads."""

from __future__ import annotations

import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Constant
from paddle.regularizer import L2Decay


class BNNeck(nn.Layer):
    """Flatten + BatchNorm1D(momentum 0.9, eps 1e-5), weight 1.0, bias 0 and frozen.

    The bias is frozen with a zero learning rate and no weight decay, not with
    ``trainable=False``: in Paddle 3.3 a BatchNorm whose bias stops gradients also gets no
    gradient for its weight, which would silently freeze the whole neck. (PaddleClas uses a
    1e-20 learning rate for the same reason.)
    """

    def __init__(self, num_features: int = 512):
        super().__init__()
        self.num_features = num_features
        self.flatten = nn.Flatten()
        self.feat_bn = nn.BatchNorm1D(
            num_features, momentum=0.9, epsilon=1e-5,
            weight_attr=ParamAttr(initializer=Constant(1.0)),
            bias_attr=ParamAttr(initializer=Constant(0.0), learning_rate=0.0,
                                regularizer=L2Decay(0.0)))

    def forward(self, x):
        return self.feat_bn(self.flatten(x))
