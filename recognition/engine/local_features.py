"""RootSIFT local features for geometric verification: extraction, per-box subsets and a compact binary format.

Features are extracted once per photo at a reduced resolution (long side `long_side`, never upscaled: SIFT
already doubles the base octave) and kept in ORIGINAL image pixel coordinates, so a detector box selects its
keypoints directly and every box of a photo shares one extraction.

Descriptors are RootSIFT (L1-normalise each SIFT vector, then element-wise sqrt, which makes the Euclidean
distance a Hellinger kernel and matches better than raw SIFT). RootSIFT vectors are unit-L2 with elements in
[0, 1] that in practice stay below ~0.36, so they are stored as uint8 `round(value * DESCRIPTOR_SCALE)` with
DESCRIPTOR_SCALE = 512 (saturating at 255, i.e. 0.498): 4x smaller than float32 at a step of 0.002.
Keypoints are float16 x, y: relative error <= 2^-11 of the coordinate, under a quarter of a pixel at the
detection resolution for any image size.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Any, Union

import cv2
import numpy as np

from .errors import EngineError
from .types import Box

DESCRIPTOR_DIM = 128
DESCRIPTOR_SCALE = 512.0
FORMAT_VERSION = 1
DEFAULT_MAX_FEATURES = 500
DEFAULT_LONG_SIDE = 480
MAX_SIDE = 65504  # largest float16: keypoint coordinates beyond it cannot be stored

_MAGIC = b"SHLF"
# magic, format version, descriptor dim, keypoint count, image width, height, detection scale (working px per original px)
_HEADER = struct.Struct("<4sHHIIIf")

BytesLike = Union[bytes, bytearray, memoryview]


class LocalFeaturesError(EngineError):
    """Bad input to, or a corrupt serialisation of, local features."""

    code = "local_features_error"


@dataclass(frozen=True, eq=False)
class LocalFeatures:
    """Keypoints (n, 2) float16 x, y in original image pixels and descriptors (n, 128) uint8 RootSIFT, strongest first.

    `image_size` is (width, height) of the original image; `scale` is the resize factor the keypoints were
    detected at (working pixels per original pixel), which verification needs to express its pixel tolerance
    at the resolution where keypoints are actually localised.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    scale: float = 1.0

    def __post_init__(self) -> None:
        keypoints = np.ascontiguousarray(self.keypoints, dtype=np.float16).reshape(-1, 2)
        descriptors = np.ascontiguousarray(self.descriptors)
        if descriptors.dtype != np.uint8:
            raise LocalFeaturesError(f"descriptors must be uint8, got {descriptors.dtype}")
        descriptors = descriptors.reshape(-1, DESCRIPTOR_DIM)
        if len(keypoints) != len(descriptors):
            raise LocalFeaturesError(f"{len(keypoints)} keypoints but {len(descriptors)} descriptors")
        if not np.isfinite(keypoints).all():
            raise LocalFeaturesError("keypoints contain NaN or infinite coordinates")
        width, height = (int(v) for v in self.image_size)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise LocalFeaturesError(f"image size must be within 1..{MAX_SIDE} px per side, got {self.image_size}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise LocalFeaturesError(f"scale must be a positive number, got {self.scale}")
        keypoints.flags.writeable = False
        descriptors.flags.writeable = False
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "descriptors", descriptors)
        object.__setattr__(self, "image_size", (width, height))
        object.__setattr__(self, "scale", float(np.float32(self.scale)))

    def __len__(self) -> int:
        return len(self.keypoints)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, LocalFeatures):
            return NotImplemented
        return (
            self.image_size == other.image_size
            and self.scale == other.scale
            and np.array_equal(self.keypoints, other.keypoints)
            and np.array_equal(self.descriptors, other.descriptors)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: compare, don't hash

    def rows_in_box(self, box: Box) -> np.ndarray:
        """Indices of the keypoints whose (x, y) lie inside the box (max corner exclusive), in order."""
        if box.whole_image or len(self) == 0:
            return np.arange(len(self))
        x = self.keypoints[:, 0].astype(np.float32)
        y = self.keypoints[:, 1].astype(np.float32)
        return np.flatnonzero((x >= box.xmin) & (x < box.xmax) & (y >= box.ymin) & (y < box.ymax))

    def subset(self, rows: np.ndarray) -> "LocalFeatures":
        """The keypoints at `rows` (this object itself when they are all of them, in order)."""
        if len(rows) == len(self):
            return self
        return LocalFeatures(self.keypoints[rows], self.descriptors[rows], self.image_size, self.scale)

    def subset_in_box(self, box: Box) -> "LocalFeatures":
        """Keypoints inside the box (see rows_in_box), so one photo extraction serves all its boxes."""
        return self.subset(self.rows_in_box(box))

    def to_bytes(self) -> bytes:
        """24-byte little-endian header (magic, version, dim, count, width, height, scale), then float16 xy, then uint8 descriptors."""
        header = _HEADER.pack(_MAGIC, FORMAT_VERSION, DESCRIPTOR_DIM, len(self), *self.image_size, self.scale)
        return b"".join([header, self.keypoints.astype("<f2").tobytes(), self.descriptors.tobytes()])

    @classmethod
    def from_bytes(cls, blob: BytesLike) -> "LocalFeatures":
        """Inverse of `to_bytes`; checks magic, version and that the sizes add up exactly."""
        view = memoryview(blob).cast("B")
        if len(view) < _HEADER.size or bytes(view[:4]) != _MAGIC:
            raise LocalFeaturesError("not serialised local features (bad magic bytes)")
        _, version, dim, count, width, height, scale = _HEADER.unpack_from(view, 0)
        if version != FORMAT_VERSION:
            raise LocalFeaturesError(f"local features format version {version} is not supported (expected {FORMAT_VERSION})")
        if dim != DESCRIPTOR_DIM:
            raise LocalFeaturesError(f"descriptor dimension {dim} is not supported (expected {DESCRIPTOR_DIM})")
        expected = _HEADER.size + count * (2 * 2 + DESCRIPTOR_DIM)
        if len(view) != expected:
            raise LocalFeaturesError(f"serialised local features are {len(view)} bytes, header describes {expected}")
        split = _HEADER.size + count * 4
        keypoints = np.frombuffer(view[_HEADER.size : split], dtype="<f2").reshape(count, 2)
        descriptors = np.frombuffer(view[split:], dtype=np.uint8).reshape(count, DESCRIPTOR_DIM)
        return cls(keypoints.astype(np.float16), descriptors.copy(), (width, height), scale)


def rootsift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT rows -> quantised RootSIFT uint8 rows (L1 normalise, sqrt, scale by DESCRIPTOR_SCALE, saturate)."""
    values = np.asarray(descriptors, dtype=np.float32).reshape(-1, DESCRIPTOR_DIM)
    values = values / np.maximum(values.sum(axis=1, keepdims=True), 1e-7)
    return np.clip(np.rint(np.sqrt(values) * DESCRIPTOR_SCALE), 0, 255).astype(np.uint8)


_LOCAL = threading.local()


def _sift(max_features: int) -> Any:
    # One detector per thread and size: creation is cheap but not free, and OpenCV does not promise that one
    # Feature2D object may run on two threads at once.
    cache = getattr(_LOCAL, "sift", None)
    if cache is None:
        cache = _LOCAL.sift = {}
    detector = cache.get(max_features)
    if detector is None:
        detector = cache[max_features] = cv2.SIFT_create(nfeatures=max_features)
    return detector


def extract_local_features(
    image_rgb_uint8: np.ndarray, *, max_features: int = DEFAULT_MAX_FEATURES, long_side: int = DEFAULT_LONG_SIDE
) -> LocalFeatures:
    """RootSIFT on the image shrunk to `long_side` (500 keypoints at 480 px matched 1000 at 640 on real photos)."""
    image = np.asarray(image_rgb_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise LocalFeaturesError(f"expected a non-empty HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    if max_features < 1 or long_side < 16:
        raise LocalFeaturesError(f"max_features must be >= 1 and long_side >= 16, got {max_features}, {long_side}")
    height, width = image.shape[:2]
    scale = min(1.0, long_side / max(height, width))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size[0] / width, size[1] / height
    else:
        scale_x = scale_y = 1.0
    keypoints, descriptors = _sift(max_features).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2), np.float16), np.zeros((0, DESCRIPTOR_DIM), np.uint8), (width, height), scale)
    responses = np.array([kp.response for kp in keypoints], dtype=np.float32)
    # SIFT may return a few more than asked (ties at the cut); keep the strongest, stable for equal responses.
    order = np.argsort(-responses, kind="stable")[:max_features]
    xy = np.array([kp.pt for kp in keypoints], dtype=np.float32)[order]
    # OpenCV's pt is in pixel-centre convention at the working size: map back to original pixels.
    xy[:, 0] = (xy[:, 0] + 0.5) / scale_x - 0.5
    xy[:, 1] = (xy[:, 1] + 0.5) / scale_y - 0.5
    xy[:, 0] = np.clip(xy[:, 0], 0, width - 1)
    xy[:, 1] = np.clip(xy[:, 1], 0, height - 1)
    return LocalFeatures(xy, rootsift(descriptors[order]), (width, height), scale)


__all__ = [
    "DEFAULT_LONG_SIDE",
    "DEFAULT_MAX_FEATURES",
    "DESCRIPTOR_DIM",
    "DESCRIPTOR_SCALE",
    "FORMAT_VERSION",
    "MAX_SIDE",
    "LocalFeatures",
    "LocalFeaturesError",
    "extract_local_features",
    "rootsift",
]
