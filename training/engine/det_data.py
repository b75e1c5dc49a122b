"""Detector training samples: images with boxes, PicoDet's light augmentation, batches.

The augmentation is what the recipe keeps for small models: random crop, random horizontal flip
and a multi-scale plain resize (more hurts them). Every random choice comes from the ``rng``
argument, so a sample is reproducible from ``(seed, step, slot)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recognition.engine.imageio import load_image
from recognition.engine.preprocess import Normalize, resize

MIN_KEPT_AREA = 0.4   # a box cut by a crop stays a box while this fraction of it is left


@dataclass(frozen=True)
class DetectionSample:
    path: str
    boxes: np.ndarray      # [G, 4] x1, y1, x2, y2 in image pixels
    target: int = -1       # position in boxes of what the camera points at (shelf scenes), -1 when unmarked


class DetectionDataset:
    """Images and their boxes from a ``boxes.jsonl`` file (``file``, ``boxes``; paths relative to it)."""

    def __init__(self, samples: Sequence[DetectionSample]):
        self.samples = list(samples)

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "DetectionDataset":
        path = Path(path)
        samples = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            boxes = np.asarray(record.get("boxes") or [], np.float32).reshape(-1, 4)
            samples.append(DetectionSample(str(path.parent / record["file"]), boxes, int(record.get("target", -1))))
        if not samples:
            raise ValueError(f"{path} lists no images")
        return cls(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        return load_image(Path(sample.path).read_bytes()), sample.boxes.copy()

    @property
    def fingerprint(self) -> dict[str, object]:
        return {"images": len(self.samples), "boxes": int(sum(len(s.boxes) for s in self.samples)),
                "first": Path(self.samples[0].path).name, "last": Path(self.samples[-1].path).name}


def random_crop(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, *,
                min_side: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A random window of ``min_side``..1 of each side; boxes clipped, those mostly cut away dropped."""
    height, width = image.shape[:2]
    crop_w = int(width * rng.uniform(min_side, 1.0))
    crop_h = int(height * rng.uniform(min_side, 1.0))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    if len(boxes):
        clipped = boxes.copy()
        clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]] - x0, 0, crop_w)
        clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]] - y0, 0, crop_h)
        area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
        keep = area(clipped) >= MIN_KEPT_AREA * np.maximum(area(boxes), 1e-6)
        if not keep.any():
            return image, boxes  # a crop that loses every object teaches nothing: keep the whole image
        boxes = clipped[keep]
    return image[y0:y0 + crop_h, x0:x0 + crop_w], boxes


def mirror(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image flipped left-right, with its boxes moved along."""
    width = image.shape[1]
    flipped = boxes.copy()
    if len(flipped):
        flipped[:, [0, 2]] = width - boxes[:, [2, 0]]
    return image[:, ::-1], flipped


@dataclass(frozen=True)
class DetectionAugment:
    """crop (probability ``crop_prob``) -> horizontal flip -> plain resize to ``size`` (as at inference)."""

    crop_prob: float = 0.5
    flip_prob: float = 0.5
    normalize: Normalize = Normalize()

    def __call__(self, image: np.ndarray, boxes: np.ndarray, size: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.crop_prob:
            image, boxes = random_crop(image, boxes, rng)
        if rng.random() < self.flip_prob:
            image, boxes = mirror(image, boxes)
        height, width = image.shape[:2]
        resized = resize(np.ascontiguousarray(image), (size, size), "bicubic")
        scale = np.array([size / width, size / height, size / width, size / height], np.float32)
        return self.normalize.to_chw(resized), (boxes * scale).astype(np.float32)


__all__ = ["DetectionAugment", "DetectionDataset", "DetectionSample", "mirror", "random_crop"]
