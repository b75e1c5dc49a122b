"""Small JPEG previews made on request from stored images: reference images on the dashboard and in the admin,
query photos and their object crops in recognition's pages and review queue. One function draws them all."""
from __future__ import annotations

import io
import logging
from functools import lru_cache

from django.conf import settings
from PIL import Image, ImageDraw

from galleries.models import ReferenceImage
from recognition.engine.boxes import crop
from recognition.engine.imageio import load_image
from shitu_platform.object_store import object_store

logger = logging.getLogger(__name__)

THUMBNAIL_MAX_SIDE = 256
PLACEHOLDER_GREY = (214, 218, 224)


def jpeg_thumbnail(data: bytes, box: list[float] | None = None, *, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """The encoded image `data`, EXIF-upright, cropped to `box` when given, scaled to fit `max_side`, as JPEG.
    Raises the decoder's error (EngineError) on bytes that are not an image or are over the size limits."""
    pixels = load_image(data, max_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_pixels=settings.SHITU_MAX_IMAGE_PIXELS)
    image = Image.fromarray(crop(pixels, box) if box else pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _encode(image)


def thumbnail_jpeg(*, reference_image: ReferenceImage, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes | None:
    """The reference image's ``jpeg_thumbnail``; None when the object cannot be read or decoded."""
    try:
        return jpeg_thumbnail(object_store().get(reference_image.object_key), max_side=max_side)
    except Exception as error:  # noqa: BLE001 - a preview must never turn into a server error
        logger.info("no thumbnail for reference image %s: %s", reference_image.pk, error)
        return None


@lru_cache(maxsize=1)
def placeholder_jpeg() -> bytes:
    """A grey square with a faint picture outline, shown in place of an image that cannot be decoded."""
    image = Image.new("RGB", (128, 128), PLACEHOLDER_GREY)
    draw = ImageDraw.Draw(image)
    ink = (176, 182, 192)
    draw.rounded_rectangle([34, 40, 94, 88], radius=5, outline=ink, width=3)
    draw.ellipse([44, 50, 54, 60], fill=ink)
    draw.polygon([(38, 84), (58, 64), (68, 74), (76, 66), (90, 84)], fill=ink)
    return _encode(image)


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82, optimize=True)
    return buffer.getvalue()
