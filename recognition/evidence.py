"""Evidence a person can see: the best match's matched keypoints, drawn as lines from the query crop to its reference.

A cosine score says "looks alike"; the homography inliers say "these points of the photo are those points of
the product's picture". `evidence_record` keeps an evenly thinned sample of the inlier pairs on the
DetectedObject (JSON, whole pixels); `draw_evidence` renders it as one JPEG, the object's crop of the query
photo on the left, the reference crop on the right, a coloured line per pair. The dashboard pages and the
Django admin both serve it from here.
"""
from __future__ import annotations

import colorsys
import io
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recognition.engine.boxes import crop_bounds
from recognition.engine.imageio import load_image
from recognition.engine.types import Evidence
from shitu_platform.object_store import object_store

if TYPE_CHECKING:
    from galleries.models import ReferenceImage
    from recognition.models import DetectedObject

MAX_PAIRS = 30  # enough lines to see the agreement, few enough to follow one and still see the pictures; < 1 KB of JSON
PANEL_HEIGHT = 300  # both pictures are scaled to this height, so the product appears at a comparable size
PANEL_MAX_WIDTH = 420  # a very wide crop is narrowed instead (and is then less tall)
MARGIN, GAP = 12, 36  # the gap leaves the lines visible between the two pictures
BACKGROUND = (246, 247, 249)
OUTLINE = (20, 24, 32)  # a dark edge under every line and dot keeps it visible on light and dark pictures alike
LINE_OPACITY = 0.8
# Pages show the picture at about half its size (an object card is ~450 px wide): lines, dots and tags are drawn
# big enough to stay visible and readable there.
LINE_WIDTH, DOT_RADIUS = 3, 5
TAG_FONT_SIZE = 22


def evidence_record(evidence: Evidence, *, reference_box: Sequence[float] | None) -> dict[str, Any]:
    """The stored form: at most MAX_PAIRS pairs spread over all inliers, rounded to pixels.

    `query` is in pixels of the query photo, `reference` in pixels of the reference crop (`reference_box` of
    the reference image, the whole image when None) whose size was `reference_size` when its features were made.
    """
    count = evidence.inliers
    keep = _spread(evidence.query_xy, MAX_PAIRS)
    return {
        "inliers": count,
        "query": np.rint(evidence.query_xy[keep]).astype(int).tolist(),
        "reference": np.rint(evidence.reference_xy[keep]).astype(int).tolist(),
        "reference_size": [int(v) for v in evidence.reference_size],
        "reference_box": None if reference_box is None else [round(float(v), 1) for v in reference_box],
    }


def draw_evidence(*, query: bytes, query_box: Sequence[float], reference: bytes, record: Mapping[str, Any]) -> bytes:
    """A JPEG of the query crop (left) and the reference crop (right) with a line between each stored pair.

    Raises ValueError for a malformed record or box, and the image decoder's errors for unreadable pictures.
    """
    query_xy, reference_xy, reference_size, reference_box = _parse(record)
    box = _box(query_box)
    photo = load_image(query)
    x0, y0, x1, y1 = crop_bounds(box, photo.shape[1], photo.shape[0])
    left, left_xy = photo[y0:y1, x0:x1], query_xy - (x0, y0)
    picture = load_image(reference)
    if reference_box is not None:
        rx0, ry0, rx1, ry1 = crop_bounds(reference_box, picture.shape[1], picture.shape[0])
        picture = picture[ry0:ry1, rx0:rx1]
    # The features came from a crop of `reference_size`; a crop of another size today is scaled onto it.
    right_xy = reference_xy * (picture.shape[1] / reference_size[0], picture.shape[0] / reference_size[1])

    left_panel, left_scale = _panel(left)
    right_panel, right_scale = _panel(picture)
    height = max(left_panel.shape[0], right_panel.shape[0])
    width = MARGIN + left_panel.shape[1] + GAP + right_panel.shape[1] + MARGIN
    canvas = np.full((height + 2 * MARGIN, width, 3), BACKGROUND, dtype=np.uint8)
    left_origin = (MARGIN, MARGIN + (height - left_panel.shape[0]) // 2)
    right_origin = (MARGIN + left_panel.shape[1] + GAP, MARGIN + (height - right_panel.shape[0]) // 2)
    for panel, (px, py) in ((left_panel, left_origin), (right_panel, right_origin)):
        canvas[py:py + panel.shape[0], px:px + panel.shape[1]] = panel
        cv2.rectangle(canvas, (px - 1, py - 1), (px + panel.shape[1], py + panel.shape[0]), (205, 209, 217), 1)

    starts = np.rint(left_xy * left_scale + left_origin).astype(int)
    ends = np.rint(right_xy * right_scale + right_origin).astype(int)
    pairs = [(tuple(start), tuple(end)) for start, end in zip(starts.tolist(), ends.tolist())]
    colours = _colours(len(pairs))
    # Lines a little transparent, so the pictures stay readable under them; the dots on top, opaque.
    lines = canvas.copy()
    for (start, end), colour in zip(pairs, colours):
        cv2.line(lines, start, end, OUTLINE, LINE_WIDTH + 2, cv2.LINE_AA)
        cv2.line(lines, start, end, colour, LINE_WIDTH, cv2.LINE_AA)
    canvas = cv2.addWeighted(lines, LINE_OPACITY, canvas, 1 - LINE_OPACITY, 0)
    for (start, end), colour in zip(pairs, colours):
        for point in (start, end):
            cv2.circle(canvas, point, DOT_RADIUS, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, point, DOT_RADIUS, OUTLINE, 2, cv2.LINE_AA)

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    _tag(draw, left_origin, "photo")
    _tag(draw, right_origin, "reference")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def stored_evidence_jpeg(detected: "DetectedObject", reference_image: "ReferenceImage") -> bytes:
    """`draw_evidence` for a stored object (with its recognition loaded) and its best match's reference image."""
    store = object_store()
    return draw_evidence(query=store.get(detected.recognition.image_key), query_box=detected.bbox,
                         reference=store.get(reference_image.object_key), record=detected.evidence or {})


def _spread(points: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most `limit` points, each the farthest from those already taken, so the lines cover the
    whole product instead of piling up on its busiest corner; deterministic (starts at the first point)."""
    if len(points) <= limit:
        return np.arange(len(points))
    points = points.astype(np.float64)
    chosen = [0]
    distance = np.linalg.norm(points - points[0], axis=1)
    for _ in range(limit - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(sorted(chosen))


def _parse(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple[float, float], list[float] | None]:
    try:
        query_xy = np.asarray(record["query"], dtype=np.float64).reshape(-1, 2)
        reference_xy = np.asarray(record["reference"], dtype=np.float64).reshape(-1, 2)
        width, height = (float(v) for v in record["reference_size"])
        reference_box = None if record.get("reference_box") is None else _box(record["reference_box"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"malformed evidence record: {error}") from error
    if len(query_xy) != len(reference_xy):
        raise ValueError(f"evidence has {len(query_xy)} query points but {len(reference_xy)} reference points")
    if not (np.isfinite(query_xy).all() and np.isfinite(reference_xy).all() and width >= 1 and height >= 1):
        raise ValueError("evidence points must be finite and the reference size positive")
    return query_xy, reference_xy, (width, height), reference_box


def _box(values: Any) -> list[float]:
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"malformed box {values!r}") from error
    if len(box) != 4:
        raise ValueError(f"a box has 4 numbers, got {values!r}")
    return box


def _panel(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture scaled to PANEL_HEIGHT (at most PANEL_MAX_WIDTH wide), and the scale used."""
    height, width = pixels.shape[:2]
    scale = min(PANEL_HEIGHT / height, PANEL_MAX_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(pixels), size, interpolation=interpolation), scale


def _colours(count: int) -> list[tuple[int, int, int]]:
    """Bright, evenly spaced hues, so neighbouring lines are told apart."""
    steps = max(min(count, 12), 1)
    return [tuple(int(c * 255) for c in colorsys.hsv_to_rgb((i % steps) / steps, 0.85, 1.0)) for i in range(count)]


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=TAG_FONT_SIZE)


def _tag(draw: ImageDraw.ImageDraw, origin: tuple[int, int], text: str) -> None:
    """A small dark label in the picture's top-left corner."""
    left, top, right, bottom = draw.textbbox((origin[0] + 10, origin[1] + 8), text, font=_font())
    draw.rounded_rectangle([left - 7, top - 5, right + 7, bottom + 5], radius=5, fill=OUTLINE)
    draw.text((origin[0] + 10, origin[1] + 8), text, fill=(255, 255, 255), font=_font())


__all__ = ["MAX_PAIRS", "draw_evidence", "evidence_record", "stored_evidence_jpeg"]
