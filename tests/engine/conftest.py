"""Shared fixtures for engine tests: generated images and clustered unit vectors (nothing downloaded, nothing mocked)."""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import pytest
from PIL import Image


def _encode(image: Image.Image, fmt: str, **save_options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_options)
    return buffer.getvalue()


@pytest.fixture
def encode() -> Callable[..., bytes]:
    """encode(pil_image, "PNG", **save_options) -> bytes."""
    return _encode


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def clustered_unit_vectors(n: int, dim: int, rng: np.random.Generator, *, n_clusters: int | None = None, spread: float = 0.8) -> np.ndarray:
    """Unit vectors scattered around random centres, like several photos per product."""
    n_clusters = n_clusters or max(5, n // 50)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def near_duplicates(base: np.ndarray, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    noisy = base + rng.standard_normal(base.shape).astype(np.float32) * (noise / np.sqrt(base.shape[1]))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered_5k() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, queries): 5,000 clustered 512-d vectors and 300 near-duplicate queries."""
    generator = np.random.default_rng(7)
    vectors = clustered_unit_vectors(5000, 512, generator)
    ids = (np.arange(5000, dtype=np.int64) * 7 + 3)  # ids that are not positions
    queries = near_duplicates(vectors[generator.integers(0, 5000, 300)], generator)
    return ids, vectors, queries
