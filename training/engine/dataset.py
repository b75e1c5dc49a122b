"""Labelled image sets for training and evaluation: PaddleClas label files or in-memory pairs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from recognition.engine.boxes import crop
from recognition.engine.imageio import load_image, load_image_file

ImageSource = Union[str, Path, bytes, bytearray, np.ndarray]
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One labelled image: a file path, encoded bytes or an HxWx3 uint8 RGB array, plus an
    optional product box ``(xmin, ymin, xmax, ymax)`` in pixels to crop before anything else."""

    source: ImageSource
    label: str
    bbox: BBox | None = None


def _parse_bbox(text: str, where: str) -> BBox:
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 4:
        raise ValueError(f"{where}: a bbox needs 4 numbers 'xmin,ymin,xmax,ymax', got {text!r}")
    xmin, ymin, xmax, ymax = (float(p) for p in parts)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"{where}: empty bbox {text!r}")
    return xmin, ymin, xmax, ymax


class ImageDataset:
    """A list of samples with string labels mapped to dense ids (sorted label order).

    Images are decoded on demand through the engine's ``load_image`` (content sniffing, size
    limits, EXIF orientation), so a training set never has to fit in memory.
    """

    def __init__(self, samples: Sequence[Sample], *, class_names: Sequence[str] | None = None):
        if not samples:
            raise ValueError("a dataset needs at least one sample")
        self.samples = list(samples)
        names = sorted({s.label for s in self.samples}) if class_names is None else list(class_names)
        self.class_names: list[str] = names
        index = {name: i for i, name in enumerate(names)}
        missing = sorted({s.label for s in self.samples} - set(index))
        if missing:
            raise ValueError(f"labels not in class_names: {missing[:5]}")
        self.labels = np.asarray([index[s.label] for s in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_names(self) -> list[str]:
        return [s.label for s in self.samples]

    def load(self, index: int) -> np.ndarray:
        """Decoded HxWx3 uint8 RGB image of sample ``index``, cropped to its bbox."""
        sample = self.samples[index]
        source = sample.source
        if isinstance(source, np.ndarray):
            image = source
        elif isinstance(source, (bytes, bytearray)):
            image = load_image(source)
        else:
            image = load_image_file(source)
        return crop(image, sample.bbox) if sample.bbox is not None else image

    def subset(self, indices: Iterable[int]) -> "ImageDataset":
        """The chosen samples, keeping this dataset's label ids."""
        return ImageDataset([self.samples[i] for i in indices], class_names=self.class_names)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple]) -> "ImageDataset":
        """From ``(image, label)`` or ``(image, label, bbox)`` tuples."""
        samples = []
        for pair in pairs:
            image, label, *rest = pair
            samples.append(Sample(image, str(label), tuple(rest[0]) if rest and rest[0] is not None else None))
        return cls(samples)

    @classmethod
    def from_label_file(cls, path: str | Path, image_root: str | Path | None = None) -> "ImageDataset":
        """PaddleClas label file: ``relative/path<TAB>label[<TAB>xmin,ymin,xmax,ymax]`` per line.

        Paths are relative to ``image_root`` (default: the label file's folder) and may not
        leave it. Without a tab the line splits at its first whitespace, so labels with
        spaces survive (PaddleClas truncates them).
        """
        label_path = Path(path)
        root = Path(image_root) if image_root is not None else label_path.parent
        resolved_root = root.resolve()
        samples = []
        for number, raw in enumerate(label_path.read_text(encoding="utf-8-sig").splitlines(), 1):
            line = raw.strip("\r\n")
            if not line.strip():
                continue
            where = f"{label_path}:{number}"
            parts = line.split("\t") if "\t" in line else line.strip().split(None, 1)
            if len(parts) < 2 or not parts[1].strip():
                raise ValueError(f"{where}: expected 'path<TAB>label', got {line!r}")
            relative, label = parts[0].strip(), parts[1].strip()
            bbox = _parse_bbox(parts[2], where) if len(parts) > 2 and parts[2].strip() else None
            image_path = (root / relative).resolve()
            if not image_path.is_relative_to(resolved_root):
                raise ValueError(f"{where}: {relative!r} points outside {root}")
            samples.append(Sample(image_path, label, bbox))
        return cls(samples)


__all__ = ["BBox", "ImageDataset", "ImageSource", "Sample"]
