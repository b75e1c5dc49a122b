"""Product-like photos of an identity's artwork: packages, scenes, camera and lighting effects.

Every random choice comes from a ``numpy.random.Generator`` the caller derives from
``(seed, class, index)``; the identity's *product design* (package shape, colours, text
band) comes from ``(seed, class)`` only, so all views of one identity show the same product,
the way several photos of one drink show the same bottle.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .sources import ART_SIZE, NOTO_FONT, NOTO_SIZE, Artwork

PACKAGES = ("can", "bottle", "box", "pouch", "sticker")
PACKAGE_WEIGHTS = (0.25, 0.3, 0.2, 0.1, 0.15)
OUTPUT_SHAPES = ((192, 192), (144, 192), (160, 192), (192, 144))  # (width, height)


# --- artwork rasterisation -----------------------------------------------------------------


def _fit(image: Image.Image, size: int) -> Image.Image:
    """Crop to the alpha bounding box and scale the longer side to ``size`` (RGBA)."""
    image = image.convert("RGBA")
    box = image.getchannel("A").getbbox()
    if box:
        image = image.crop(box)
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def _svg(svg_text: str | None, path: str | None, size: int) -> Image.Image:
    import resvg_py

    kwargs = {"svg_string": svg_text} if svg_text is not None else {"svg_path": path}
    # Render at twice the size, then fit: viewBoxes often carry empty margins.
    png = resvg_py.svg_to_bytes(**kwargs, width=size * 2, skip_system_fonts=True)
    return Image.open(io.BytesIO(bytes(png)))


def _recolour_svg(path: str, colour: str) -> str:
    text = open(path, encoding="utf-8").read()
    return text.replace("<svg ", f'<svg fill="{colour}" ', 1)


def _with_plate(logo: Image.Image, colour: str, rng_key: int) -> Image.Image:
    """A logo centred on a rounded (or round) plate of ``colour``."""
    side = round(max(logo.size) * 1.35)
    plate = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(plate)
    if rng_key % 2:
        draw.ellipse((0, 0, side - 1, side - 1), fill=colour)
    else:
        draw.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 6, fill=colour)
    plate.alpha_composite(logo, ((side - logo.width) // 2, (side - logo.height) // 2))
    return plate


@lru_cache(maxsize=1)
def _noto_font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(NOTO_FONT), NOTO_SIZE)


@lru_cache(maxsize=768)
def rasterize(artwork: Artwork, size: int = ART_SIZE) -> Image.Image:
    """The artwork as a tight RGBA image whose longer side is ``size`` (cached per process)."""
    if artwork.kind == "svg":
        image = _svg(None, artwork.ref, size)
    elif artwork.kind == "svg-mono":
        image = _svg(_recolour_svg(artwork.ref, artwork.fg or "#000000"), None, size)
        if artwork.plate:
            image = _with_plate(_fit(image, size), artwork.plate, len(artwork.ref))
    elif artwork.kind == "noto":
        canvas = Image.new("RGBA", (NOTO_SIZE * 2, NOTO_SIZE * 2), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((8, 8), artwork.ref, font=_noto_font(), embedded_color=True)
        image = canvas
    elif artwork.kind == "image":
        with Image.open(artwork.ref) as opened:
            image = opened.convert("RGBA")
    else:
        raise ValueError(f"unknown artwork kind {artwork.kind!r}")
    return _fit(image, size)


# --- the product design of an identity ---------------------------------------------------------


@dataclass(frozen=True)
class ProductDesign:
    """What stays the same across the views of one identity."""

    package: str
    body: tuple[int, int, int]          # package / bottle colour
    label: tuple[int, int, int]         # label background
    accent: tuple[int, int, int]        # stripe / band colour
    text: tuple[int, int, int]
    cap: tuple[int, int, int]
    stripes: int                        # 0-2 accent bands on the label
    art_scale: float                    # artwork width / label width
    art_y: float                        # artwork centre, fraction of label height
    show_title: bool
    aspect: float                       # package height / width
    transparent_body: bool              # a clear bottle showing its liquid


def _colour(rng: np.random.Generator, *, light: bool | None = None) -> tuple[int, int, int]:
    hue, sat = rng.random(), rng.uniform(0.25, 1.0)
    if light is None:
        value = rng.uniform(0.2, 1.0)
    else:
        value, sat = (rng.uniform(0.85, 1.0), sat * 0.3) if light else (rng.uniform(0.15, 0.6), sat)
    r, g, b = _hsv_to_rgb(hue, sat, value)
    return int(r * 255), int(g * 255), int(b * 255)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _hex(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def product_design(rng: np.random.Generator, *, brand_colour: str | None = None) -> ProductDesign:
    package = str(rng.choice(PACKAGES, p=PACKAGE_WEIGHTS))
    label = _colour(rng, light=bool(rng.random() < 0.55))
    if brand_colour and rng.random() < 0.5:
        label = _hex(brand_colour)
    text = (20, 20, 20) if sum(label) > 380 else (245, 245, 245)
    if rng.random() < 0.3:
        text = _colour(rng)
    aspect = {"can": rng.uniform(1.5, 1.9), "bottle": rng.uniform(2.2, 2.9), "box": rng.uniform(0.9, 1.6),
              "pouch": rng.uniform(1.2, 1.5), "sticker": 1.0}[package]
    return ProductDesign(package=package, body=_colour(rng), label=label, accent=_colour(rng), text=text,
                         cap=_colour(rng), stripes=int(rng.integers(0, 3)), art_scale=float(rng.uniform(0.45, 0.8)),
                         art_y=float(rng.uniform(0.38, 0.55)), show_title=bool(rng.random() < 0.6),
                         aspect=float(aspect), transparent_body=bool(rng.random() < 0.4))


# --- drawing a package ------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size)  # Pillow's bundled font: the same on every machine


def _too_close(art: Image.Image, colour: tuple[int, int, int], threshold: float = 60.0) -> bool:
    """True when the artwork's mean opaque colour is within ``threshold`` (RGB distance) of ``colour``."""
    arr = np.asarray(art, np.float32)
    opaque = arr[..., 3] > 128
    if not opaque.any():
        return False
    mean = arr[opaque][:, :3].mean(axis=0)
    return float(np.linalg.norm(mean - np.asarray(colour, np.float32))) < threshold


def _label(art: Image.Image, design: ProductDesign, title: str, width: int, height: int,
           rng: np.random.Generator) -> Image.Image:
    """The flat label: colour, accent stripes, the artwork and the identity's name."""
    label = Image.new("RGBA", (width, height), design.label + (255,))
    draw = ImageDraw.Draw(label)
    for band in range(design.stripes):
        y = int(height * (0.1 + 0.75 * band)) if design.stripes > 1 else int(height * 0.82)
        draw.rectangle((0, y, width, y + max(2, height // 12)), fill=design.accent)
    art_w = max(8, int(width * design.art_scale * rng.uniform(0.95, 1.05)))
    art_h = max(8, int(art.height * art_w / art.width))
    if art_h > height * 0.7:
        art_h = int(height * 0.7)
        art_w = max(8, int(art.width * art_h / art.height))
    sized = art.resize((art_w, art_h), Image.Resampling.BILINEAR)
    if _too_close(sized, design.label):
        # A logo in the label's own colour would vanish (brand colour on a brand-coloured label).
        plate_colour = (20, 20, 20) if sum(design.label) > 380 else (245, 245, 245)
        sized = _with_plate(sized, "#%02x%02x%02x" % plate_colour, art_w)
        shrink = min(1.0, width * 0.9 / sized.width, height * 0.75 / sized.height)
        sized = sized.resize((max(8, int(sized.width * shrink)), max(8, int(sized.height * shrink))),
                             Image.Resampling.BILINEAR)
        art_w, art_h = sized.size
    cy = int(height * design.art_y)
    label.alpha_composite(sized, ((width - art_w) // 2, max(0, cy - art_h // 2)))
    if design.show_title and title:
        text = title.upper()[:22]
        size = max(8, min(height // 9, int(width * 1.6 / max(4, len(text)))))
        font = _font(size)
        box = draw.textbbox((0, 0), text, font=font)
        x = (width - (box[2] - box[0])) // 2
        y = min(height - size - 2, cy + art_h // 2 + size // 3)
        draw.text((x, y), text, font=font, fill=design.text)
    return label


def cylinder_warp(image: Image.Image, *, arc: float, phase: float, shade: float,
                  highlight: float) -> Image.Image:
    """Wrap ``image`` (RGBA) around a cylinder seen from the front: horizontal sine remap + shading.

    ``arc`` is the half-angle of the label around the can (radians); the visible half-cylinder
    (+-pi/2) is centred ``phase`` radians away from the label's centre, so parts of the label
    can turn out of view. Columns off the label come back transparent.
    """
    src = np.asarray(image.convert("RGBA"), dtype=np.float32)
    height, width = src.shape[:2]
    x = (np.arange(width) + 0.5) / width * 2 - 1            # -1..1 across the visible can
    theta = np.arcsin(np.clip(x, -0.999, 0.999))            # angle on the cylinder
    u = (theta + phase) / arc                              # -1..1 across the label
    cols = (u + 1) / 2 * (width - 1)
    inside = (u >= -1) & (u <= 1)
    cols = np.clip(cols, 0, width - 1)
    left = np.floor(cols).astype(int)
    right = np.minimum(left + 1, width - 1)
    frac = (cols - left)[None, :, None]
    out = src[:, left] * (1 - frac) + src[:, right] * frac
    out[:, ~inside, 3] = 0
    light = (1 - shade) + shade * np.cos(theta) ** 0.8
    light = light + highlight * np.exp(-((theta + 0.45) / 0.12) ** 2)
    out[..., :3] = np.clip(out[..., :3] * light[None, :, None], 0, 255)
    return Image.fromarray(out.astype(np.uint8), "RGBA")


def _shade_columns(image: Image.Image, strength: float, highlight: float) -> Image.Image:
    """Cylinder-like lighting of a body that is not remapped (bottle neck, caps)."""
    arr = np.asarray(image, dtype=np.float32).copy()
    x = (np.arange(arr.shape[1]) + 0.5) / arr.shape[1] * 2 - 1
    theta = np.arcsin(np.clip(x, -0.999, 0.999))
    light = (1 - strength) + strength * np.cos(theta) ** 0.8 + highlight * np.exp(-((theta + 0.45) / 0.12) ** 2)
    arr[..., :3] = np.clip(arr[..., :3] * light[None, :, None], 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


def draw_package(art: Image.Image, design: ProductDesign, title: str, rng: np.random.Generator,
                 width: int = 160) -> Image.Image:
    """The product as an RGBA image on a transparent background."""
    height = int(width * design.aspect)
    phase = float(rng.normal(0, 0.25))
    shade, highlight = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.0, 0.5))
    if design.package == "sticker":
        side = width
        label = _label(art, design, "", side, side, rng) if rng.random() < 0.5 else art.resize(
            (side, max(1, int(art.height * side / art.width))), Image.Resampling.BILINEAR)
        return label
    if design.package == "box":
        return _label(art, design, title, width, height, rng)
    if design.package == "pouch":
        label = _label(art, design, title, width, height, rng)
        mask = Image.new("L", label.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), radius=width // 5, fill=255)
        label.putalpha(mask)
        return _shade_columns(label, shade * 0.5, highlight * 0.5)
    if design.package == "can":
        label = _label(art, design, title, width, height, rng)
        body = cylinder_warp(label, arc=float(rng.uniform(1.4, 2.2)), phase=phase, shade=shade, highlight=highlight)
        can = Image.new("RGBA", (width, height), design.body + (255,))
        can = _shade_columns(can, shade, highlight)
        can.alpha_composite(body)
        rim = max(3, height // 14)
        out = Image.new("RGBA", (width, height + rim), (0, 0, 0, 0))
        out.alpha_composite(can, (0, rim // 2))
        draw = ImageDraw.Draw(out)
        draw.ellipse((0, 0, width - 1, rim), fill=(190, 190, 195, 255))
        draw.ellipse((0, height - rim // 2, width - 1, height + rim // 2), fill=(150, 150, 155, 255))
        return out
    # bottle: a cap, a neck, shoulders and a body; the label wraps the body.
    neck_w, cap_h, neck_h = int(width * 0.38), int(height * 0.07), int(height * 0.16)
    body_top = cap_h + neck_h
    liquid = design.body + ((150,) if design.transparent_body else (255,))
    bottle = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(bottle)
    cx = width // 2
    draw.rectangle((cx - neck_w // 2 - 2, 0, cx + neck_w // 2 + 2, cap_h), fill=design.cap)
    draw.polygon([(cx - neck_w // 2, cap_h), (cx + neck_w // 2, cap_h), (width - 1, body_top + height // 12),
                  (0, body_top + height // 12)], fill=liquid)
    draw.rounded_rectangle((0, body_top, width - 1, height - 1), radius=width // 6, fill=liquid)
    bottle = _shade_columns(bottle, shade, highlight)
    label_h = int((height - body_top) * rng.uniform(0.5, 0.7) * 1.0)
    label = _label(art, design, title, width, label_h, rng)
    wrapped = cylinder_warp(label, arc=float(rng.uniform(1.6, 2.6)), phase=phase, shade=shade, highlight=highlight)
    bottle.alpha_composite(wrapped, (0, body_top + (height - body_top - label_h) // 2))
    return bottle


# --- scenes ----------------------------------------------------------------------------------

ClutterSource = Callable[[np.random.Generator], Image.Image]


def background(width: int, height: int, rng: np.random.Generator, clutter: ClutterSource | None) -> Image.Image:
    """Gradient, noise texture, stripes/checks, or a shelf crowded with other products."""
    kind = rng.choice(["gradient", "noise", "stripes", "shelf", "plain"], p=[0.25, 0.2, 0.15, 0.3, 0.1])
    if kind == "shelf" and clutter is None:
        kind = "gradient"
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    if kind == "gradient" or kind == "plain":
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle))
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        if kind == "plain":
            t *= 0.15
        arr = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "noise":
        cells = int(rng.integers(3, 16))
        small = rng.random((cells, cells, 1)).astype(np.float32)
        smooth = np.asarray(Image.fromarray((small[..., 0] * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC), np.float32)[..., None] / 255
        arr = a * (1 - smooth) + b * smooth + rng.normal(0, 10, (height, width, 1))
    elif kind == "stripes":
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, math.pi)
        t = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / period * 2 * math.pi) > 0).astype(np.float32)
        if rng.random() < 0.4:
            t = np.logical_xor(t > 0, np.sin(yy / period * 2 * math.pi) > 0).astype(np.float32)
        arr = a * (1 - t[..., None]) + b * t[..., None]
    else:
        arr = a * 0.6 + b * 0.4 + np.zeros((height, width, 1), np.float32)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    if kind == "shelf":
        _shelf(image, rng, clutter)
    return image


def _shelf(canvas: Image.Image, rng: np.random.Generator, clutter: ClutterSource) -> None:
    """Rows of other products (clutter identities) with shelf edges between them."""
    width, height = canvas.size
    rows = int(rng.integers(1, 3))
    row_h = height // rows
    draw = ImageDraw.Draw(canvas)
    for row in range(rows):
        x = int(rng.integers(-30, 0))
        while x < width:
            item = clutter(rng)
            scale = row_h * rng.uniform(0.7, 0.95) / item.height
            item = item.resize((max(1, int(item.width * scale)), max(1, int(item.height * scale))),
                               Image.Resampling.BILINEAR)
            _paste_clipped(canvas, item, x, row * row_h + row_h - item.height - 4)
            x += item.width + int(rng.integers(0, 10))
        shelf_colour = tuple(int(c) for c in rng.integers(90, 230, 3))
        draw.rectangle((0, (row + 1) * row_h - 5, width, (row + 1) * row_h), fill=shelf_colour)


def _perspective(image: Image.Image, rng: np.random.Generator, strength: float, fill: tuple) -> Image.Image:
    """Random homography: the four corners move by up to ``strength`` of the size."""
    width, height = image.size
    src = [(0, 0), (width, 0), (width, height), (0, height)]
    dst = [(x + rng.uniform(-strength, strength) * width, y + rng.uniform(-strength, strength) * height)
           for x, y in src]
    matrix = []
    for (x, y), (u, v) in zip(src, dst):
        matrix.append([u, v, 1, 0, 0, 0, -x * u, -x * v])
        matrix.append([0, 0, 0, u, v, 1, -y * u, -y * v])
    coeffs = np.linalg.solve(np.asarray(matrix, np.float64), np.asarray(src, np.float64).reshape(8))
    return image.transform(image.size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                           fillcolor=fill)


def _occlude(image: Image.Image, rng: np.random.Generator) -> None:
    """A hand-like blob or a price tag over part of the product."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.6:
        skin = tuple(int(c) for c in np.array([224, 172, 140]) * rng.uniform(0.55, 1.1)) + (255,)
        side = rng.choice([-1, 1])
        cx = width * (0.5 + side * rng.uniform(0.35, 0.55))
        cy = height * rng.uniform(0.3, 0.8)
        rx, ry = width * rng.uniform(0.15, 0.3), height * rng.uniform(0.12, 0.22)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
        for finger in range(4):
            fy = cy - ry + finger * ry * 0.5
            tip = cx - side * rx * 1.6
            draw.rounded_rectangle((min(tip, cx), fy, max(tip, cx), fy + ry * 0.4), radius=int(ry * 0.2),
                                   fill=skin)
    else:
        w, h = width * rng.uniform(0.15, 0.35), height * rng.uniform(0.08, 0.2)
        x, y = rng.uniform(0, width - w), rng.uniform(height * 0.5, height - h)
        draw.rectangle((x, y, x + w, y + h), fill=_colour(rng, light=True) + (255,))


def _photometric(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(image.convert("RGB"), np.float32) / 255
    arr = arr * rng.uniform(0.65, 1.3)                                          # exposure
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.7, 1.25) + mean                            # contrast
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + (arr - grey) * rng.uniform(0.6, 1.35)                           # saturation
    arr = arr * rng.uniform(0.88, 1.12, 3)[None, None, :]                         # white balance
    if rng.random() < 0.35:                                                     # uneven light
        yy, xx = np.mgrid[0:arr.shape[0], 0:arr.shape[1]].astype(np.float32)
        cx, cy = rng.uniform(0, arr.shape[1]), rng.uniform(0, arr.shape[0])
        spot = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (arr.shape[0] * 0.35) ** 2)))
        arr = arr * (0.75 + 0.5 * spot[..., None])
    arr = np.clip(arr, 0, 1) ** rng.uniform(0.8, 1.25)                            # gamma
    if rng.random() < 0.3:
        arr = arr + rng.normal(0, rng.uniform(0.01, 0.03), arr.shape)
    out = Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.4))))
    return out


def render_view(art: Image.Image, design: ProductDesign, title: str, rng: np.random.Generator, *,
                clutter: ClutterSource | None = None,
                output_shape: tuple[int, int] | None = None) -> Image.Image:
    """One photo-like RGB view of the product (``art`` is the view's artwork, RGBA)."""
    width, height = output_shape or OUTPUT_SHAPES[int(rng.integers(len(OUTPUT_SHAPES)))]
    scene = background(width, height, rng, clutter)
    package = draw_package(art, design, title, rng)
    if rng.random() < 0.7:
        package = package.rotate(float(rng.normal(0, 8)), resample=Image.Resampling.BILINEAR, expand=True)
    # Products mostly fill the frame, as in close-up shelf or hand-held photos; sometimes cut off.
    fill = rng.uniform(0.65, 1.2)
    scale = min(width * fill / package.width, height * fill / package.height)
    if rng.random() < 0.2:
        scale *= rng.uniform(1.1, 1.5)
    package = package.resize((max(1, int(package.width * scale)), max(1, int(package.height * scale))),
                             Image.Resampling.BILINEAR)
    x = int((width - package.width) / 2 + rng.normal(0, 0.08) * width)
    y = int((height - package.height) / 2 + rng.normal(0, 0.08) * height)
    _paste_clipped(scene, package, x, y)
    if rng.random() < 0.25:
        _occlude(scene, rng)
    if rng.random() < 0.7:
        scene = _perspective(scene, rng, float(rng.uniform(0.03, 0.12)), fill=tuple(int(c) for c in rng.integers(0, 255, 3)) + (255,))
    return _photometric(scene, rng)


def _paste_clipped(canvas: Image.Image, item: Image.Image, x: int, y: int) -> None:
    left, top = max(0, -x), max(0, -y)
    if left >= item.width or top >= item.height or x >= canvas.width or y >= canvas.height:
        return
    cropped = item.crop((left, top, item.width, item.height))
    canvas.alpha_composite(cropped, (max(0, x), max(0, y)))


def encode_jpeg(image: Image.Image, rng: np.random.Generator) -> bytes:
    """JPEG bytes at a random quality (compression artefacts are part of the augmentation)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(35, 96)), optimize=False)
    return buffer.getvalue()


__all__ = ["OUTPUT_SHAPES", "PACKAGES", "ProductDesign", "background", "cylinder_warp", "draw_package",
           "encode_jpeg", "product_design", "rasterize", "render_view"]
