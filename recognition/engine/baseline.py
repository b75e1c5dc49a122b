"""Non-learned colour-histogram extractor: the floor every learned model must beat, and a real Extractor for tests."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class ColourHistogramExtractor:
    """Joint RGB histogram (bins per channel), square-rooted (Hellinger) and L2-normalised, fitted to `feature_dim`.

    bins=8 gives exactly 8^3 = 512 values; fewer are zero-padded, more are mapped by a fixed seeded orthonormal
    projection so cosine similarities are approximately kept. Ignores shape and texture by design.
    """

    def __init__(self, bins: int = 8, feature_dim: int = 512, *, max_pixels: int = 65_536, seed: int = 0) -> None:
        if not 1 <= bins <= 256:
            raise ValueError(f"bins must be in 1..256, got {bins}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be positive, got {feature_dim}")
        self.bins = bins
        self.feature_dim = feature_dim
        self.max_pixels = max_pixels
        hist_dim = bins**3
        self._projection: np.ndarray | None = None
        if hist_dim > feature_dim:
            gaussian = np.random.default_rng(seed).standard_normal((hist_dim, feature_dim))
            self._projection = np.linalg.qr(gaussian)[0].astype(np.float32)  # orthonormal columns

    def extract(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """One L2-normalised float32 row per HxWx3 uint8 RGB crop."""
        features = np.zeros((len(crops), self.feature_dim), dtype=np.float32)
        for row, crop in enumerate(crops):
            features[row] = self._fit(self._histogram(crop))
        return features

    def _histogram(self, crop: np.ndarray) -> np.ndarray:
        pixels = np.asarray(crop)
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or pixels.size == 0:
            raise ValueError(f"expected a non-empty HxWx3 uint8 image, got {pixels.dtype} {pixels.shape}")
        # A regular stride keeps large crops cheap; a histogram barely changes on a sub-grid.
        stride = max(1, int(np.ceil(np.sqrt(pixels.shape[0] * pixels.shape[1] / self.max_pixels))))
        sample = pixels[::stride, ::stride].reshape(-1, 3).astype(np.uint32)
        quantised = (sample * self.bins) >> 8
        cells = (quantised[:, 0] * self.bins + quantised[:, 1]) * self.bins + quantised[:, 2]
        counts = np.bincount(cells, minlength=self.bins**3).astype(np.float32)
        return np.sqrt(counts / counts.sum())

    def _fit(self, hellinger: np.ndarray) -> np.ndarray:
        if self._projection is not None:
            fitted = hellinger @ self._projection
        else:
            fitted = np.zeros(self.feature_dim, dtype=np.float32)
            fitted[: len(hellinger)] = hellinger
        norm = float(np.linalg.norm(fitted))
        return fitted / norm if norm > 0 else fitted


__all__ = ["ColourHistogramExtractor"]
