"""Generated demo products: drawn, deterministic product photos (no third-party data ships with the project).

Each product is a can, bottle or box with its own colours and name; gallery photos and query photos are
different views of it (angle, scale, background, lighting), like a retailer's packshots vs shelf photos.
"""
from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

PRODUCTS = [
    ("Sparkling Cola 330 ml", "can", (196, 30, 38), (255, 255, 255)),
    ("Lemon Soda 330 ml", "can", (240, 205, 40), (40, 120, 40)),
    ("Orange Juice 1 L", "box", (245, 140, 20), (255, 250, 230)),
    ("Mineral Water 500 ml", "bottle", (70, 150, 220), (255, 255, 255)),
    ("Green Tea 500 ml", "bottle", (60, 150, 70), (240, 230, 180)),
    ("Energy Drink 250 ml", "can", (30, 30, 40), (120, 220, 60)),
    ("Milk 1 L", "box", (240, 240, 245), (30, 90, 200)),
    ("Grape Soda 330 ml", "can", (110, 40, 140), (250, 200, 60)),
    ("Iced Coffee 250 ml", "can", (120, 75, 45), (240, 225, 200)),
    ("Apple Juice 1 L", "box", (170, 200, 60), (200, 30, 40)),
    ("Sports Drink 600 ml", "bottle", (20, 80, 190), (250, 120, 30)),
    ("Coconut Water 330 ml", "box", (250, 250, 240), (90, 160, 80)),
]


@dataclass(frozen=True)
class DemoPhoto:
    label: str
    filename: str
    data: bytes


def _product(shape: str, body: tuple[int, int, int], accent: tuple[int, int, int], name: str) -> Image.Image:
    """The product on a transparent canvas."""
    width, height = {"can": (140, 230), "bottle": (120, 300), "box": (170, 260)}[shape]
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if shape == "can":
        draw.rounded_rectangle([4, 8, width - 4, height - 8], radius=18, fill=body)
        draw.rectangle([4, 8, width - 4, 24], fill=(190, 190, 195))
    elif shape == "bottle":
        draw.rectangle([width // 2 - 16, 0, width // 2 + 16, 50], fill=(230, 230, 230))
        draw.rounded_rectangle([8, 40, width - 8, height - 4], radius=30, fill=body + (235,))
    else:
        draw.rectangle([6, 6, width - 6, height - 6], fill=body)
        draw.polygon([(6, 6), (width // 2, -10 + 30), (width - 6, 6)], fill=accent)
    band_top = height * 2 // 5
    draw.rectangle([10, band_top, width - 10, band_top + height // 5], fill=accent)
    words = name.split()
    draw.text((16, band_top + 8), words[0][:10], fill=body)
    draw.text((16, band_top + 24), " ".join(words[1:])[:14], fill=body)
    draw.ellipse([width // 2 - 18, height * 3 // 4 - 18, width // 2 + 18, height * 3 // 4 + 18], outline=accent, width=5)
    return image


def _scene(product: Image.Image, rng: random.Random, size: tuple[int, int]) -> Image.Image:
    grey = rng.randrange(205, 250)
    background = Image.new("RGB", size, (grey, grey - rng.randrange(0, 12), grey - rng.randrange(0, 12)))
    draw = ImageDraw.Draw(background)
    for _ in range(rng.randrange(0, 4)):  # a little shelf clutter at the edges
        x, y = rng.choice([rng.randrange(0, size[0] // 8), rng.randrange(size[0] * 7 // 8, size[0])]), rng.randrange(size[1])
        draw.rectangle([x, y, x + rng.randrange(10, 40), y + rng.randrange(5, 30)], fill=tuple(rng.randrange(120, 255) for _ in range(3)))
    scale = rng.uniform(0.85, 1.0) * min(size[0] / product.width, size[1] / product.height) * 0.92
    view = product.resize((max(8, int(product.width * scale)), max(8, int(product.height * scale))))
    view = view.rotate(rng.uniform(-12, 12), expand=True, resample=Image.Resampling.BICUBIC)
    x = (size[0] - view.width) // 2 + rng.randrange(-size[0] // 12, size[0] // 12 + 1)
    y = (size[1] - view.height) // 2 + rng.randrange(-size[1] // 12, size[1] // 12 + 1)
    background.paste(view, (max(0, x), max(0, y)), view)
    background = ImageEnhance.Brightness(background).enhance(rng.uniform(0.92, 1.08))
    if rng.random() < 0.3:
        background = background.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return background


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def demo_gallery_photos(views_per_product: int = 3, seed: int = 7) -> list[DemoPhoto]:
    photos = []
    for number, (name, shape, body, accent) in enumerate(PRODUCTS):
        product = _product(shape, body, accent, name)
        for view in range(views_per_product):
            rng = random.Random(seed * 1000 + number * 10 + view)
            photos.append(DemoPhoto(name, f"{number:02d}/{view}.jpg", _jpeg(_scene(product, rng, (320, 400)))))
    return photos


def demo_query_photos(seed: int = 99) -> list[DemoPhoto]:
    """One new shelf photo per product: views the gallery has not seen."""
    photos = []
    for number, (name, shape, body, accent) in enumerate(PRODUCTS):
        rng = random.Random(seed * 1000 + number)
        photos.append(DemoPhoto(name, f"query-{number:02d}.jpg", _jpeg(_scene(_product(shape, body, accent, name), rng, (480, 560)))))
    return photos


def demo_gallery_zip(photos: list[DemoPhoto]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for photo in photos:
            archive.writestr(photo.filename, photo.data)
        archive.writestr("labels.txt", "\n".join(f"{p.filename}\t{p.label}" for p in photos))
    return buffer.getvalue()
