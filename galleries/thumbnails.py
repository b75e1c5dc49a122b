"""Small JPEG previews of reference images for the dashboard, made on request from the stored object."""
from __future__ import annotations

import io
import logging
from functools import lru_cache

from django.conf import settings
from PIL import Image, ImageDraw

from galleries.models import ReferenceImage
from recognition.engine.imageio import load_image
from shitu_platform.object_store import object_store

logger = logging.getLogger(__name__)

THUMBNAIL_MAX_SIDE = 256
PLACEHOLDER_GREY = (214, 218, 224)


def thumbnail_jpeg(*, reference_image: ReferenceImage, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes | None:
    """The image, EXIF-upright, scaled to fit `max_side`; None when the object cannot be read or decoded."""
    try:
        data = object_store().get(reference_image.object_key)
        pixels = load_image(data, max_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_pixels=settings.SHITU_MAX_IMAGE_PIXELS)
    except Exception as error:  # noqa: BLE001 - a preview must never turn into a server error
        logger.info("no thumbnail for reference image %s: %s", reference_image.pk, error)
        return None
    image = Image.fromarray(pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _encode(image)


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
