"""Shelf-like detector data with exact boxes, from real photos: products in rows, the photographed one marked.

``python -m training.data_builder.shelf --labels ../shared/data/drink-dev/gallery/labels.txt
--split training/splits/drink-dev.json --part held_out --out var/shelf-held-out --seed 0``

drink-dev photos are tight hand-held close-ups, so each photo's central region is a product *tile*. A scene
is one photo's tile (the *target*: what the camera points at, the biggest tile, near the centre) with tiles
of other products of the same split part around it, in one to three rows, touching and partly overlapping,
each 5-40 % of the frame, over another photo blurred beyond recognition. Later tiles hide earlier ones, so
each box is the tight box of what stays visible (a tile under 45 % visible is dropped, as in composites).
Blur and lighting changes come last and move no box.

Writes ``images/<n>.jpg``, ``boxes.jsonl`` (``file``, ``width``, ``height``, ``boxes``, ``labels``,
``target``: the target's position in ``boxes``; the detector's eval/training format), ``queries.txt`` (the
target's label per scene), ``sources.tsv`` (the target's source photo, relative to the labels' folder, so a
retrieval evaluation can leave it out) and ``build.json``. Seeded: a pure function of (labels, split, seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from recognition.engine.imageio import load_image_file

SCENE_SHAPES = ((640, 480), (480, 640), (800, 600), (600, 800))  # (width, height)
TILE_KEEP = (0.8, 0.9)   # share of a photo's width and height kept as its central product region
MIN_VISIBLE = 0.45       # share of a tile that must stay visible for it to keep its box
TARGET_AREA = (0.12, 0.40)
NEIGHBOUR_AREA = 0.05    # the smallest tile, as a share of the frame


@dataclass(frozen=True)
class ShelfScene:
    """A rendered scene: the image, one box per visible tile, their labels and which box is the target."""

    image: np.ndarray
    boxes: list[list[int]]
    labels: list[str]
    target: int
    owner: np.ndarray  # per pixel, the index in `boxes` of the tile shown there (-1: background)


def _read_labels(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            relative, label = line.split("\t")[:2] if "\t" in line else line.split(None, 1)
            rows.append((relative.strip(), label.strip()))
    return rows


def product_tile(photo: np.ndarray) -> Image.Image:
    """The photo's central region, where a close-up's product is."""
    height, width = photo.shape[:2]
    keep_w, keep_h = round(width * TILE_KEEP[0]), round(height * TILE_KEEP[1])
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return Image.fromarray(photo[top:top + keep_h, left:left + keep_w])


def _scaled(tile: Image.Image, area: float, frame: tuple[int, int]) -> Image.Image:
    """``tile`` resized to cover ``area`` of the frame, keeping its aspect (and fitting inside the frame)."""
    width, height = frame
    aspect = tile.width / tile.height
    tile_h = np.sqrt(area * width * height / aspect)
    tile_w = tile_h * aspect
    shrink = min(1.0, 0.95 * width / tile_w, 0.95 * height / tile_h)
    size = (max(8, round(tile_w * shrink)), max(8, round(tile_h * shrink)))
    return tile.resize(size, Image.BILINEAR)


def _blurred_background(photo: np.ndarray, frame: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Another photo stretched over the frame and blurred until no product in it can be recognised."""
    image = Image.fromarray(photo).resize(frame, Image.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(radius=0.06 * max(frame)))
    return ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.6, 1.1)))


def render_shelf(target: np.ndarray, target_label: str, neighbours: list[tuple[np.ndarray, str]],
                 backdrop: np.ndarray, rng: np.random.Generator, *, photometric: bool = True) -> ShelfScene:
    """One scene: ``target`` near the centre, ``neighbours`` in rows around it, over a blurred ``backdrop``."""
    frame = SCENE_SHAPES[int(rng.integers(len(SCENE_SHAPES)))]
    width, height = frame
    canvas = _blurred_background(backdrop, frame, rng)
    target_area = float(rng.uniform(*TARGET_AREA))
    target_tile = _scaled(product_tile(target), target_area, frame)
    target_area = target_tile.width * target_tile.height / (width * height)  # after fitting the frame
    # the target's place: the centre, moved by up to a tenth of each side
    tx = int(np.clip((width - target_tile.width) / 2 + rng.uniform(-0.1, 0.1) * width, 0, width - target_tile.width))
    ty = int(np.clip((height - target_tile.height) / 2 + rng.uniform(-0.1, 0.1) * height, 0, height - target_tile.height))
    placements: list[tuple[Image.Image, int, int, str]] = []
    row_height = target_tile.height
    rows = [ty] + [ty + sign * (row_height + int(rng.integers(0, 12))) for sign in (-1, 1) if rng.random() < 0.6]
    pool = list(neighbours)
    for row_top in rows:
        for direction in (-1, 1):
            if row_top == ty:  # the target's row starts at its sides, the others above its middle
                edge = tx if direction < 0 else tx + target_tile.width
            else:
                edge = tx + target_tile.width // 2
            while pool and 0 < edge < width:
                photo, label = pool.pop()
                area = float(rng.uniform(NEIGHBOUR_AREA, max(NEIGHBOUR_AREA, 0.8 * target_area)))
                tile = _scaled(product_tile(photo), area, frame)
                overlap = int(rng.uniform(0.0, 0.15) * tile.width)  # touching or partly overlapping
                x = edge - tile.width + overlap if direction < 0 else edge - overlap
                y = row_top + target_tile.height - tile.height + int(rng.integers(-6, 7))  # standing on the shelf
                placements.append((tile, x, y, label))
                edge = x if direction < 0 else x + tile.width
    placements.append((target_tile, tx, ty, target_label))  # last: the photographed product is in front
    owner = np.full((height, width), -1, np.int32)
    full_area, windows = [], []
    for index, (tile, x, y, _) in enumerate(placements):
        if photometric:
            tile = ImageEnhance.Brightness(tile).enhance(float(rng.uniform(0.8, 1.2)))
        canvas.paste(tile, (x, y))
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + tile.width), min(height, y + tile.height)
        if x1 > x0 and y1 > y0:
            owner[y0:y1, x0:x1] = index
        full_area.append(tile.width * tile.height)
        windows.append((x0, y0, max(x0, x1), max(y0, y1)))
    boxes, labels, target = [], [], -1
    for index, (_, _, _, label) in enumerate(placements):
        # a tile's pixels lie in the window it was pasted into: look there only (the whole frame gave the same)
        x0, y0, x1, y1 = windows[index]
        window = owner[y0:y1, x0:x1]
        mine = window == index
        ys, xs = np.nonzero(mine)
        if len(xs) < MIN_VISIBLE * full_area[index]:
            window[mine] = -1  # too hidden to count as an object: it is background now
            continue
        if index == len(placements) - 1:
            target = len(boxes)
        boxes.append([x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1])
        labels.append(label)
        window[mine] = len(boxes) - 1
    if photometric:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 1.2))))
        canvas = ImageEnhance.Brightness(canvas).enhance(float(rng.uniform(0.75, 1.25)))
        canvas = ImageEnhance.Contrast(canvas).enhance(float(rng.uniform(0.8, 1.2)))
    return ShelfScene(np.asarray(canvas), boxes, labels, target, owner)


def build(labels: Path, out: Path, *, products: Optional[set[str]], seed: int = 0, neighbours: int = 8,
          photometric: bool = True, show_progress: bool = True) -> dict:
    """One scene per photo of ``products`` (all when None); neighbours come from the same products only."""
    rows = _read_labels(labels)
    root = labels.parent
    chosen = [(i, rel, lab) for i, (rel, lab) in enumerate(rows) if products is None or lab in products]
    if not chosen:
        raise ValueError(f"{labels}: no photo of the chosen products")
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    records, queries, sources = [], [], []
    iterator = chosen
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(chosen, desc="shelf scenes", unit="scene", file=sys.stderr)
    for index, relative, label in iterator:
        rng = np.random.default_rng([seed, index])
        others = [j for j, (_, _, other) in enumerate(chosen) if other != label]
        if not others:
            raise ValueError("a shelf needs photos of at least two products")
        picks = rng.choice(len(others), size=min(neighbours + 1, len(others)), replace=False)
        picked = [chosen[others[int(p)]] for p in picks]
        backdrop = load_image_file(root / picked[0][1])
        around = [(load_image_file(root / rel), lab) for _, rel, lab in picked[1:]]
        scene = render_shelf(load_image_file(root / relative), label, around, backdrop, rng, photometric=photometric)
        name = f"images/{index:05d}.jpg"
        Image.fromarray(scene.image).save(out / name, quality=92)
        records.append({"file": name, "width": int(scene.image.shape[1]), "height": int(scene.image.shape[0]),
                        "boxes": scene.boxes, "labels": scene.labels, "target": scene.target})
        queries.append(f"{name}\t{label}")
        sources.append(f"{name}\t{relative}")
    (out / "boxes.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    (out / "queries.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (out / "sources.tsv").write_text("\n".join(sources) + "\n", encoding="utf-8")
    info = {"labels": str(labels), "seed": seed, "scenes": len(records), "neighbours": neighbours,
            "boxes": int(sum(len(r["boxes"]) for r in records)), "photometric": photometric}
    (out / "build.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", type=Path, help="product split JSON; only --part's products are used")
    parser.add_argument("--part", default="held_out", choices=("held_out", "train"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--neighbours", type=int, default=8, help="other products tried around each target")
    args = parser.parse_args(argv)
    products = set(json.loads(args.split.read_text(encoding="utf-8"))[args.part]) if args.split else None
    info = build(args.labels, args.out, products=products, seed=args.seed, neighbours=args.neighbours)
    print(f"{info['scenes']} shelf scenes, {info['boxes']} boxes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
