"""One thumbnail function: galleries.thumbnails.jpeg_thumbnail draws every scaled preview from stored bytes."""
import io

import pytest
from PIL import Image

from galleries.thumbnails import THUMBNAIL_MAX_SIDE, jpeg_thumbnail
from recognition.engine.errors import EngineError
from tests.support.images import encoded, truncated_jpeg


def _picture() -> bytes:
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    image.paste((0, 0, 255), (200, 0, 400, 200))  # right half blue
    return encoded(image)


def test_whole_image_fits_the_side_and_keeps_its_shape():
    thumbnail = Image.open(io.BytesIO(jpeg_thumbnail(_picture())))
    assert thumbnail.format == "JPEG" and thumbnail.size == (THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE // 2)


def test_box_crops_before_scaling():
    thumbnail = Image.open(io.BytesIO(jpeg_thumbnail(_picture(), [220, 20, 380, 180], max_side=80))).convert("RGB")
    assert thumbnail.size == (80, 80)
    red, green, blue = thumbnail.getpixel((40, 40))
    assert blue > 200 and red < 60  # only the blue half was kept


def test_bytes_that_are_not_an_image_raise_the_decoder_error():
    with pytest.raises(EngineError):
        jpeg_thumbnail(b"not an image")
    with pytest.raises(EngineError):
        jpeg_thumbnail(truncated_jpeg())
