"""Image intake shared by every entry point: bytes in, HxWx3 uint8 RGB out, or a typed ImageError.

Decoding is by content (magic bytes), restricted to an allowlist so Pillow never hands EPS/PostScript
to Ghostscript, and size limits are checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from .errors import (
    EmptyImage,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    TruncatedImage,
    UnsupportedImageFormat,
)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MIN_SIDE = 16

# Pillow plugin names we let Image.open try; MPO (multi-picture JPEG from phones) comes out of the JPEG opener.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_ALLOWED_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"

# Truncated files must fail loudly: we never set Pillow's global ImageFile.LOAD_TRUNCATED_IMAGES (tests assert it is False).

BytesLike = Union[bytes, bytearray, memoryview]


# --- sniffing ---------------------------------------------------------------------

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def sniff_format(data: BytesLike) -> str | None:
    """Name the image format from magic bytes ('JPEG', 'PSD', ...) or None; used only to pick the right error."""
    head = bytes(data[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in {12, 16, 40, 52, 56, 64, 108, 124}:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    # Known image formats we refuse on purpose (named so the user learns what to convert).
    if head[:4] == b"8BPS":
        return "PSD"
    if head.startswith(b"%!PS") or head[:4] == b"\xc5\xd0\xd3\xc6":
        return "EPS"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "ICO"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    if head[:2] == b"\xff\x0a" or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JPEGXL"
    if head[:4] == b"qoif":
        return "QOI"
    if head[:4] == b"DDS ":
        return "DDS"
    if head[:4] == b"icns":
        return "ICNS"
    if head.startswith(b"gimp xcf"):
        return "XCF"
    if head[:2] == b"\x01\xda":
        return "SGI"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "SUN"
    if len(head) >= 3 and head[0] == 0x0A and head[1] in (0, 2, 3, 4, 5) and head[2] == 1:
        return "PCX"
    if head.startswith(b"SIMPLE  ="):
        return "FITS"
    if re.match(rb"P[1-7][ \t\r\n]", head):
        return "PNM"
    text_head = bytes(data[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text_head.startswith(b"<svg") or (text_head.startswith(b"<?xml") and b"<svg" in text_head):
        return "SVG"
    return None


def _header_dimensions(data: BytesLike, kind: str | None) -> tuple[int, int] | None:
    """Width/height straight from the header, only to put numbers in a decompression-bomb message."""
    head = bytes(data[:64])
    try:
        if kind == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if kind == "GIF":
            return struct.unpack("<HH", head[6:10])
        if kind == "BMP":
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if kind == "JPEG":
            return _jpeg_dimensions(bytes(data[: 256 * 1024]))
    except struct.error:
        return None
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


# --- human-readable numbers ---------------------------------------------------------


def _plain(value: float) -> str:
    """At most one decimal and never an exponent: 10000, 12.3, 64 (`:.3g` wrote 1e+04)."""
    return f"{value:.1f}".removesuffix(".0")


def _pixels(count: int) -> str:
    return f"{_plain(count / 1e6)} Mpx" if count >= 1_000_000 else f"{count} px"


def _size(count: int) -> str:
    mib = count / (1024 * 1024)
    return f"{_plain(mib)} MiB" if count >= 1024 * 1024 else f"{count} bytes"


def _too_many_pixels(width: int | None, height: int | None, pixel_count: int, max_pixels: int) -> ImageTooLarge:
    dims = f"{width}x{height} = " if width and height else ""
    return ImageTooLarge(
        f"image is {dims}{_pixels(pixel_count)}, limit {_pixels(max_pixels)}",
        details={"width": width, "height": height, "pixels": pixel_count, "max_pixels": max_pixels},
    )


def _bomb_error(data: BytesLike, kind: str | None, error: Exception, max_pixels: int) -> ImageTooLarge:
    dims = _header_dimensions(data, kind)
    match = re.search(r"\((\d+) pixels\)", str(error))
    if dims:
        pixel_count = dims[0] * dims[1]
    else:
        pixel_count = int(match.group(1)) if match else 0
    return _too_many_pixels(dims[0] if dims else None, dims[1] if dims else None, pixel_count, max_pixels)


# --- decoding ---------------------------------------------------------------------


def load_image(
    data: BytesLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> np.ndarray:
    """Decode uploaded bytes into an EXIF-upright HxWx3 uint8 RGB array, refusing anything unsafe with a typed ImageError."""
    byte_count = len(data)
    if byte_count == 0:
        raise EmptyImage("the file is empty (0 bytes)")
    if byte_count > max_bytes:
        raise FileTooLarge(
            f"file is {_size(byte_count)}, limit {_size(max_bytes)}",
            details={"bytes": byte_count, "max_bytes": max_bytes},
        )
    kind = sniff_format(data)
    if kind is not None and kind not in ALLOWED_FORMATS:
        raise UnsupportedImageFormat(
            f"{kind} images are not supported; upload {_ALLOWED_NAMES}", details={"format": kind}
        )

    image = _open(data, kind, max_pixels)
    try:
        width, height = image.size
        if width * height > max_pixels:
            raise _too_many_pixels(width, height, width * height, max_pixels)
        if min(width, height) < min_side:
            raise ImageTooSmall(
                f"image is {width}x{height}, the shorter side must be at least {min_side} px",
                details={"width": width, "height": height, "min_side": min_side},
            )
        _decode_first_frame(image, data, kind, max_pixels)
        upright = _exif_upright(image)
        rgb = _to_rgb(upright)
        return np.array(rgb, dtype=np.uint8).reshape(rgb.size[1], rgb.size[0], 3)
    finally:
        image.close()


def load_image_file(path: Union[str, os.PathLike[str]], **limits: int) -> np.ndarray:
    """`load_image` for a file on disk; the size limit is checked with stat() so a huge file is never read."""
    max_bytes = limits.get("max_bytes", DEFAULT_MAX_BYTES)
    file_path = Path(path)
    byte_count = file_path.stat().st_size
    if byte_count > max_bytes:
        raise FileTooLarge(
            f"file is {_size(byte_count)}, limit {_size(max_bytes)}",
            details={"bytes": byte_count, "max_bytes": max_bytes},
        )
    with file_path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    return load_image(data, **limits)


def _open(data: BytesLike, kind: str | None, max_pixels: int) -> ImageFile.ImageFile:
    try:
        return Image.open(io.BytesIO(bytes(data)), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _bomb_error(data, kind, error, max_pixels) from error
    except UnidentifiedImageError as error:
        if kind in ALLOWED_FORMATS:
            raise TruncatedImage(
                f"the file looks like {kind} but its header cannot be read (corrupt or truncated)",
                details={"format": kind},
            ) from error
        raise NotAnImage(f"the file is not a recognised image; upload {_ALLOWED_NAMES}") from error
    except MemoryError:
        raise
    except Exception as error:  # plugin-specific parse failures (OSError, SyntaxError, struct.error, ...)
        if kind in ALLOWED_FORMATS:
            raise TruncatedImage(
                f"{kind} data is truncated or corrupt ({error})", details={"format": kind}
            ) from error
        raise NotAnImage(f"the file is not a readable image ({error})") from error


def _decode_first_frame(image: ImageFile.ImageFile, data: BytesLike, kind: str | None, max_pixels: int) -> None:
    """Decode frame 0 only (animated GIF/APNG/WebP); any decoder failure means truncated or corrupt data."""
    fmt = image.format or kind or "image"
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _bomb_error(data, kind, error, max_pixels) from error
    except MemoryError:
        raise
    except Exception as error:
        raise TruncatedImage(f"{fmt} data is truncated or corrupt ({error})", details={"format": fmt}) from error


def _exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored rather than refusing a good image."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:
        return image
    return upright if upright is not None else image


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _to_rgb(image: Image.Image) -> Image.Image:
    """Normalise any decoded mode to 8-bit RGB: alpha onto white, 16-bit and float scaled (not clipped), CMYK via ICC when present."""
    mode = image.mode
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return image
    if mode in _UINT16_MODES:
        return _grey_to_rgb(_scale_uint16(np.asarray(image)))
    if mode == "I":
        values = np.asarray(image)
        if values.size and values.min() >= 0 and values.max() <= 65535:
            return _grey_to_rgb(_scale_uint16(values))
        return _grey_to_rgb(_stretch(values.astype(np.float64)))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            return _grey_to_rgb(np.rint(values * 255.0).astype(np.uint8))
        return _grey_to_rgb(_stretch(values))
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise UnsupportedImageFormat(
            f"pixel mode {mode} is not supported", details={"mode": mode}
        ) from error


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535): 65535 -> 255, 257 -> 1, and nothing above 255 is ever clipped.
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), mode="RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Use the embedded ICC profile when there is one (print CMYK is far from naive inversion); fall back to Pillow's formula."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:
            pass
    return image.convert("RGB")


__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIDE",
    "load_image",
    "load_image_file",
    "sniff_format",
]
