"""Training views that look like real shots: part of the product, other products beside and over it,
blur and light. Pretrained features suffer most from clutter (measured in the pretrained-start
issue), so the head learns from views in which the product is not alone.

Every random choice comes from the ``rng`` argument: a view is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from recognition.engine.preprocess import resize


def _fit_height(image: np.ndarray, height: int) -> Image.Image:
    h, w = image.shape[:2]
    width = max(1, round(w * height / max(h, 1)))
    return Image.fromarray(np.ascontiguousarray(image)).resize((width, max(1, height)), Image.Resampling.BILINEAR)


def _background(size: int, other: np.ndarray | None, rng: np.random.Generator) -> Image.Image:
    """Another photo blurred beyond recognition, or flat light-grey shelf tones."""
    if other is not None and rng.random() < 0.7:
        canvas = Image.fromarray(np.ascontiguousarray(resize(other, (size, size), "bilinear")))
        return canvas.filter(ImageFilter.GaussianBlur(radius=size / 12))
    tone = rng.integers(90, 240, size=3)
    noise = rng.normal(0, 6, size=(size, size, 3))
    return Image.fromarray(np.clip(tone + noise, 0, 255).astype(np.uint8))


def shelf_view(target: np.ndarray, size: int, rng: np.random.Generator,
               neighbour: Callable[[], np.ndarray]) -> np.ndarray:
    """``target`` set at 45-90 % of the frame's height among 1-3 other products in a row.

    Neighbours touch or overlap the target (behind it); with probability 0.3 one more stands in
    front, covering at most about 15 % of the target's width. ``neighbour()`` returns an image of
    another product.
    """
    canvas = _background(size, neighbour(), rng)
    height = int(size * rng.uniform(0.45, 0.9))
    product = _fit_height(target, height)
    pw = min(product.width, int(size * 0.9))
    if pw != product.width:
        product = product.resize((pw, max(1, int(height * pw / product.width))), Image.Resampling.BILINEAR)
    cx = size / 2 + rng.uniform(-0.12, 0.12) * size
    base = size / 2 + rng.uniform(-0.1, 0.2) * size + product.height / 2
    left = int(cx - product.width / 2)
    top = int(min(size, base) - product.height)
    for side in (-1, 1):
        x = left if side < 0 else left + product.width
        for _ in range(int(rng.integers(0, 3))):
            other = _fit_height(neighbour(), int(height * rng.uniform(0.8, 1.15)))
            overlap = int(other.width * rng.uniform(-0.05, 0.15))
            ox = x - other.width + overlap if side < 0 else x - overlap
            canvas.paste(other, (ox, int(min(size, base) - other.height)))
            x = ox if side < 0 else ox + other.width
    canvas.paste(product, (left, top))
    if rng.random() < 0.3:
        front = _fit_height(neighbour(), int(height * rng.uniform(0.8, 1.1)))
        cover = int(product.width * rng.uniform(0.05, 0.15))
        side = rng.random() < 0.5
        fx = left - front.width + cover if side else left + product.width - cover
        canvas.paste(front, (fx, int(min(size, base) - front.height + rng.integers(0, 8))))
    return photometric(np.asarray(canvas), rng)


def partial_view(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 55-100 % of the area (the camera closer, or the product cut by the frame)."""
    h, w = image.shape[:2]
    area = rng.uniform(0.55, 1.0)
    aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
    ch = int(min(h, max(8, round(h * np.sqrt(area / aspect)))))
    cw = int(min(w, max(8, round(w * np.sqrt(area * aspect)))))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    out = resize(np.ascontiguousarray(image[y:y + ch, x:x + cw]), (size, size), "bilinear")
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return photometric(out, rng)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and colour jitter, and blur with probability 0.3."""
    pil = Image.fromarray(np.ascontiguousarray(image))
    pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.7, 1.3))
    pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.7, 1.3))
    pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.8, 1.2))
    if rng.random() < 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 2.0)))
    return np.asarray(pil)


__all__ = ["partial_view", "photometric", "shelf_view"]
