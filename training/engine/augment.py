"""The PP-ShiTuV2 training augmentation chain, numpy + Pillow, driven by an explicit RNG."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from recognition.engine.preprocess import Normalize, resize

REFERENCE_SIZE = 224
REFERENCE_PAD = 10


@dataclass(frozen=True)
class TrainAugment:
    """resize -> random horizontal flip -> pad -> random crop -> random rotation -> resize -> normalise.

    Mirrors PaddleClas' GeneralRecognitionV2 train ops (OpenCV-style bilinear resize from the
    engine's preprocess, zero padding, uniform crop offsets, rotation by U(-90, 90) degrees
    with probability 0.5, bilinear, black fill). Every random choice comes from the ``rng``
    argument, so a sample's augmentation is reproducible from its seed.
    """

    size: int = REFERENCE_SIZE
    pad: int = REFERENCE_PAD
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_degrees: float = 90.0
    normalize: Normalize = field(default_factory=Normalize)

    @classmethod
    def for_size(cls, size: int) -> "TrainAugment":
        """The reference chain at another input size, padding scaled with it (10 px at 224)."""
        return cls(size=size, pad=max(1, round(REFERENCE_PAD * size / REFERENCE_SIZE)))

    def augment(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """HxWx3 uint8 RGB -> augmented ``size x size x 3`` uint8 (before normalisation)."""
        square = (self.size, self.size)
        out = resize(np.asarray(image), square, "bilinear")
        if rng.random() < self.flip_prob:
            out = out[:, ::-1]
        if self.pad > 0:
            out = np.pad(out, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)))
            top, left = rng.integers(0, 2 * self.pad + 1, size=2)
            out = out[top:top + self.size, left:left + self.size]
        if rng.random() < self.rotate_prob:
            angle = float(rng.uniform(-self.max_degrees, self.max_degrees))
            rotated = Image.fromarray(np.ascontiguousarray(out)).rotate(
                angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))
            out = np.asarray(rotated)
        return np.ascontiguousarray(resize(out, square, "bilinear"))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """HxWx3 uint8 RGB -> normalised CHW float32, ready to stack into a batch."""
        return self.normalize.to_chw(self.augment(image, rng))


__all__ = ["TrainAugment"]
