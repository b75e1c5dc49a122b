"""A fixed colour-histogram descriptor as Paddle ops, so it can live inside an exported extractor.

Same descriptor as ``recognition.engine.baseline.ColourHistogramExtractor`` (joint RGB histogram,
square-rooted, L2-normalised, fixed orthonormal projection to ``out_dim``), computed here from the
network's own normalised input. It has no trainable weights: in a fused extractor it carries the
colour evidence that a network trained on little data has not learned yet, and the learned branch
adds shape and print on top (see ``RecognitionModel``).
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from recognition.engine.preprocess import IMAGENET_MEAN, IMAGENET_STD


def histogram_projection(bins: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """The baseline's fixed projection: identity (zero-padded) or seeded orthonormal columns."""
    hist_dim = bins ** 3
    if hist_dim <= out_dim:
        return np.eye(hist_dim, out_dim, dtype=np.float32)
    gaussian = np.random.default_rng(seed).standard_normal((hist_dim, out_dim))
    return np.linalg.qr(gaussian)[0].astype(np.float32)


class ColourHistogram(nn.Layer):
    """``x [N, 3, H, W]`` normalised with ImageNet mean/std -> ``[N, out_dim]`` unit colour descriptors.

    Pixels are read on a ``stride`` grid (a histogram barely changes on a sub-grid); the joint
    histogram is built from three per-channel one-hot codes with one batched matrix product, which
    needs ``N x P x bins^2`` floats instead of ``N x P x bins^3``.
    """

    def __init__(self, bins: int = 8, out_dim: int = 256, *, stride: int = 2, seed: int = 0,
                 mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD):
        super().__init__()
        self.bins, self.out_dim, self.stride = bins, out_dim, stride
        self.register_buffer("mean", paddle.to_tensor(np.asarray(mean, np.float32).reshape(1, 3, 1, 1)))
        self.register_buffer("std", paddle.to_tensor(np.asarray(std, np.float32).reshape(1, 3, 1, 1)))
        self.register_buffer("projection", paddle.to_tensor(histogram_projection(bins, out_dim, seed)))

    def forward(self, x):
        pixels = x[:, :, ::self.stride, ::self.stride] * self.std + self.mean       # back to [0, 1]
        # The baseline quantises uint8 values: bin = (value * bins) >> 8.
        codes = paddle.floor(paddle.clip(paddle.round(pixels * 255.0), 0.0, 255.0) * self.bins / 256.0)
        codes = codes.astype("int64").flatten(2)                                    # [N, 3, P]
        red = F.one_hot(codes[:, 0], self.bins)                                     # [N, P, bins]
        green = F.one_hot(codes[:, 1], self.bins)
        blue = F.one_hot(codes[:, 2], self.bins)
        red_green = (red.unsqueeze(-1) * green.unsqueeze(-2)).flatten(2)           # [N, P, bins^2]
        joint = paddle.bmm(red_green.transpose([0, 2, 1]), blue).flatten(1)       # [N, bins^3], r-major
        hellinger = paddle.sqrt(joint / joint.sum(axis=1, keepdim=True))
        return F.normalize(paddle.matmul(hellinger, self.projection), axis=1)


__all__ = ["ColourHistogram", "histogram_projection"]
