"""Generated test images: solid/patterned photos and hostile files (bombs, truncations)."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (96, 128), fmt: str = "PNG") -> bytes:
    return encoded(Image.new("RGB", size, colour), fmt)


def product_photo(colour: tuple[int, int, int], size: tuple[int, int] = (120, 160), background=(235, 235, 235), fmt="JPEG") -> bytes:
    """A product-like photo: a coloured block on a light background with a white label band."""
    image = Image.new("RGB", size, background)
    width, height = size
    image.paste(colour, (width // 6, height // 8, width * 5 // 6, height * 7 // 8))
    image.paste((250, 250, 250), (width // 6, height * 2 // 5, width * 5 // 6, height * 3 // 5))
    return encoded(image, fmt, **({"quality": 92} if fmt == "JPEG" else {}))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A ~100-byte PNG whose header declares width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _png_chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    return product_photo((10, 120, 200))[:400]
