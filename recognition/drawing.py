"""Pictures the recognition dashboard and admin serve: scaled query photos, object crops, reference thumbnails (all
through `galleries.thumbnails.jpeg_thumbnail`), matched-keypoint evidence, and the placeholder shown in place of a
picture that cannot be read. No HTTP here."""
from __future__ import annotations

import io
import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from galleries.thumbnails import jpeg_thumbnail
from recognition.engine.errors import EngineError
from recognition.evidence import stored_evidence_jpeg
from shitu_platform.object_store import object_store
from shitu_platform.storage.base import ObjectStoreError

if TYPE_CHECKING:
    from galleries.models import ReferenceImage
    from recognition.models import DetectedObject

logger = logging.getLogger(__name__)

# What reading a stored picture may raise that is not a bug: the page shows the placeholder instead.
_UNREADABLE = (EngineError, ObjectStoreError, OSError, ValueError)


def stored_jpeg_or_none(*, key: str, box: list[float] | None, max_side: int, what: str) -> bytes | None:
    """A JPEG of the stored image (cropped to `box`), or None when it cannot be read or decoded."""
    try:
        return jpeg_thumbnail(object_store().get(key), box, max_side=max_side)
    except _UNREADABLE as error:
        logger.info("no picture for %s: %s", what, error)
    except Exception:  # noqa: BLE001 - a picture must never turn into a server error page
        logger.exception("unexpected failure drawing %s", what)
    return None


def evidence_jpeg_or_none(*, detected: DetectedObject, reference_image: ReferenceImage, what: str) -> bytes | None:
    """The object's matched-keypoint picture, or None when a stored picture (or the record) cannot be read."""
    try:
        return stored_evidence_jpeg(detected, reference_image)
    except _UNREADABLE as error:
        logger.info("no evidence picture for %s: %s", what, error)
    except Exception:  # noqa: BLE001 - a picture must never turn into a server error page
        logger.exception("unexpected failure drawing evidence for %s", what)
    return None


@lru_cache(maxsize=1)
def placeholder_jpeg() -> bytes:
    """Grey tile with a faint broken-picture mark, served in place of an image that cannot be decoded."""
    image = Image.new("RGB", (160, 160), (222, 225, 231))
    draw = ImageDraw.Draw(image)
    ink = (170, 176, 188)
    draw.rounded_rectangle([42, 48, 118, 112], radius=6, outline=ink, width=3)
    draw.ellipse([54, 60, 68, 74], fill=ink)
    draw.polygon([(48, 106), (74, 80), (86, 92), (96, 84), (112, 106)], fill=ink)
    draw.line([(36, 124), (124, 36)], fill=ink, width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
