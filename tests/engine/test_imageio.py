"""Image intake: every case is generated here with Pillow; nothing is read from fixtures on disk."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from recognition.engine.errors import (
    EmptyImage,
    FileTooLarge,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    TruncatedImage,
    UnsupportedImageFormat,
)
from recognition.engine.imageio import load_image, load_image_file, sniff_format

TEAL = (0, 128, 128)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bomb_png(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _png_chunk(b"IEND", b"")
    )


def _noise(width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_pillow_truncated_loading_stays_off() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_decodes_allowed_formats_to_rgb_uint8(encode, fmt: str) -> None:
    pixels = load_image(encode(Image.new("RGB", (40, 30), TEAL), fmt))
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous and pixels.flags.writeable
    assert np.abs(pixels[15, 20].astype(int) - TEAL).max() <= 3


def test_format_comes_from_content_not_extension(encode, tmp_path) -> None:
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes(encode(Image.new("RGB", (20, 20), TEAL), "PNG"))
    assert load_image_file(misnamed)[0, 0].tolist() == list(TEAL)
    text = tmp_path / "notes.png"
    text.write_text("shopping list: milk, eggs, bread\n" * 4)
    with pytest.raises(NotAnImage):
        load_image_file(text)


def test_cmyk_jpeg_with_adobe_inversion(encode) -> None:
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).info.get("adobe") is not None  # Pillow writes inverted Adobe CMYK
    pixel = load_image(data)[16, 16].astype(int)
    assert np.abs(pixel - (255, 0, 0)).max() <= 4


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_not_clipped(encode, fmt: str) -> None:
    gradient = np.linspace(0, 65535, 64 * 32).round().astype(np.uint16).reshape(32, 64)
    source = Image.fromarray(gradient.astype(">u2") if fmt == "TIFF" else gradient)  # I;16B for TIFF, I;16 for PNG
    pixels = load_image(encode(source, fmt))
    expected = ((gradient.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    assert np.array_equal(pixels[:, :, 0], expected)
    assert np.array_equal(pixels[:, :, 0], pixels[:, :, 2])
    assert pixels.min() == 0 and pixels.max() == 255
    assert 100 < int(pixels[16, 32, 0]) < 160  # mid-grey stays mid-grey (clipping would give 255)


def test_32bit_int_and_float_grey(encode) -> None:
    ints = (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) * 64)  # 0..65472, the 16-bit range in an "I" image
    assert load_image(encode(Image.fromarray(ints), "TIFF"))[31, 31, 0] == round(65472 / 257)
    floats = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    pixels = load_image(encode(Image.fromarray(floats), "TIFF"))
    assert pixels[0, 0, 0] == 0 and pixels[31, 31, 0] == 255


def test_rgba_transparent_pixels_become_white(encode) -> None:
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red
    rgba[:, 10:] = (0, 0, 255, 0)  # fully transparent blue
    rgba[0, 0] = (0, 0, 0, 128)  # half-transparent black
    pixels = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert pixels[5, 5].tolist() == [255, 0, 0]
    assert pixels[5, 15].tolist() == [255, 255, 255]
    assert 120 <= int(pixels[0, 0, 0]) <= 135


def test_la_and_palette_transparency_become_white(encode) -> None:
    grey_alpha = Image.new("LA", (20, 20), (0, 0))
    assert load_image(encode(grey_alpha, "PNG"))[3, 3].tolist() == [255, 255, 255]
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 255, 0, 255, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 10, 20))
    data = encode(palette, "PNG", transparency=1)
    pixels = load_image(data)
    assert pixels[5, 2].tolist() == [0, 255, 0]
    assert pixels[5, 15].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_expands_to_three_channels(encode, mode: str) -> None:
    pixels = load_image(encode(Image.new(mode, (20, 20), 255 if mode == "L" else 1), "PNG"))
    assert pixels.shape == (20, 20, 3) and pixels[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_6_rotates_and_moves_corner(encode) -> None:
    stored = Image.new("RGB", (60, 30), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 12, 12))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pixels = load_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert pixels.shape == (60, 30, 3)  # width and height swapped
    top_right = pixels[3, 26].astype(int)
    top_left = pixels[3, 3].astype(int)
    assert top_right[0] > 200 and top_right[2] < 60  # the red corner moved to the top right
    assert top_left[2] > 200 and top_left[0] < 60


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_use_first_frame(encode, fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    pixel = load_image(data)[16, 16].astype(int)
    assert np.abs(pixel - (255, 0, 0)).max() <= 4


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(encode, fmt: str) -> None:
    data = encode(_noise(200, 200), fmt)
    with pytest.raises(TruncatedImage) as caught:
        load_image(data[: len(data) // 2])
    assert caught.value.code == "truncated_image" and fmt in str(caught.value)


def test_decompression_bomb_refused_from_header_fast() -> None:
    data = _bomb_png(30000, 30000)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        load_image(data)
    assert time.perf_counter() - started < 0.5
    assert caught.value.code == "image_too_large"
    assert str(caught.value) == "image is 30000x30000 = 900 Mpx, limit 40 Mpx"


def test_own_pixel_limit_applies_below_pillows(encode) -> None:
    with pytest.raises(ImageTooLarge, match="8000x8000 = 64 Mpx, limit 40 Mpx"):
        load_image(_bomb_png(8000, 8000))  # under Pillow's own bomb limit, over ours, refused before decoding
    with pytest.raises(ImageTooLarge, match=r"100x100 = 10000 px, limit 5000 px"):
        load_image(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)


def test_empty_random_and_text_bytes() -> None:
    with pytest.raises(EmptyImage):
        load_image(b"")
    with pytest.raises(NotAnImage):
        load_image(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(NotAnImage) as caught:
        load_image(b"hello, this is a plain text file\n" * 10)
    assert caught.value.code == "not_an_image"


def test_too_small_and_too_many_bytes(encode, tmp_path) -> None:
    with pytest.raises(ImageTooSmall, match="8x40"):
        load_image(encode(Image.new("RGB", (8, 40)), "PNG"))
    assert load_image(encode(Image.new("RGB", (8, 40)), "PNG"), min_side=8).shape == (40, 8, 3)
    data = encode(_noise(64, 64), "PNG")
    with pytest.raises(FileTooLarge, match=f"file is {len(data)} bytes, limit 1000 bytes"):
        load_image(data, max_bytes=1000)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(FileTooLarge):
        load_image_file(path, max_bytes=1000)
    with pytest.raises(FileTooLarge, match="21 MiB, limit 20 MiB"):
        load_image(b"\x00" * (21 * 1024 * 1024))


@pytest.mark.parametrize("fmt, expected", [("ICO", "ICO"), ("PPM", "PNM"), ("JPEG2000", "JPEG2000"), ("QOI", "QOI")])
def test_other_pillow_formats_are_refused(encode, fmt: str, expected: str) -> None:
    try:
        data = encode(Image.new("RGB", (32, 32), TEAL), fmt)
    except (OSError, KeyError) as error:  # encoder not compiled into this Pillow
        pytest.skip(f"Pillow cannot write {fmt}: {error}")
    assert sniff_format(data) == expected
    with pytest.raises(UnsupportedImageFormat, match=expected):
        load_image(data)


def test_psd_and_eps_are_refused_without_parsing() -> None:
    psd = b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 32, 32, 8, 3) + b"\x00" * 64
    with pytest.raises(UnsupportedImageFormat, match="PSD"):
        load_image(psd)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n" + b" " * 64
    with pytest.raises(UnsupportedImageFormat, match="EPS") as caught:
        load_image(eps)
    assert caught.value.code == "unsupported_image_format"
    assert isinstance(caught.value, ImageError)


def test_load_image_file_reads_from_disk(encode, tmp_path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(encode(Image.new("RGB", (24, 18), TEAL), "WEBP", lossless=True))
    assert load_image_file(os.fspath(path)).shape == (18, 24, 3)
