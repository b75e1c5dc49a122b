"""Detector training data: products pasted on cluttered scenes, so every box is exact.

``python -m training.data_builder.composites --out DIR --images N --seed S`` writes
``DIR/images/<n>.jpg`` and ``DIR/boxes.jsonl`` (one line per image: ``file``, ``width``,
``height``, ``boxes`` as ``[x1, y1, x2, y2]`` pixels). Two scene kinds mirror what the
mainbody detector sees: a close-up where one product fills most of the frame (hand-held or
packshot photos), and a wider view of two to six products. Backgrounds never contain
unlabelled products (a shelf of them would teach the detector to ignore products), but do
contain distractors: hands, price tags, stripes and blobs that are not objects of interest.
Every image is drawn from ``(seed, index)``, so the set is a pure function of its settings.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .build import _class_seed, eligible
from .render import _colour, _occlude, _photometric, background, draw_package, encode_jpeg, product_design, rasterize
from .sources import DEFAULT_CACHE, DEFAULT_SOURCES, Identity, SourceMissing, load_identities

BOXES_NAME = "boxes.jsonl"
INFO_NAME = "build.json"
SCENE_SHAPES = ((320, 320), (256, 320), (320, 256), (288, 384), (384, 288))  # (width, height)
MIN_VISIBLE = 0.45     # a product cut off by the frame keeps its box only if this much of it shows
MIN_SIDE = 8           # pixels: smaller boxes are dropped (and their product too)


@dataclass(frozen=True)
class CompositeSettings:
    out: Path
    images: int = 4000
    seed: int = 0
    close_up_fraction: float = 0.45   # scenes with one product filling most of the frame
    workers: int = 2


def _package(identity: Identity, rng: np.random.Generator, seed: int) -> Image.Image:
    """The identity's package (its own design, one of its drawings), optionally tilted."""
    design = product_design(np.random.default_rng([seed, _class_seed(identity.key), 1]), brand_colour=identity.colour)
    art = rasterize(identity.artworks[int(rng.integers(len(identity.artworks)))], 128)
    package = draw_package(art, design, identity.title, rng, width=int(rng.integers(90, 170)))
    if rng.random() < 0.6:
        package = package.rotate(float(rng.normal(0, 12)), resample=Image.Resampling.BILINEAR, expand=True)
    return package


def _distractors(scene: Image.Image, rng: np.random.Generator) -> None:
    """Shapes that are part of the background, not products: blobs, bars and thin lines."""
    draw = ImageDraw.Draw(scene)
    width, height = scene.size
    for _ in range(int(rng.integers(0, 5))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.05, 0.5) * width, rng.uniform(0.02, 0.25) * height
        colour = _colour(rng) + (int(rng.integers(120, 256)),)
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif shape == 1:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.line((x, y, x + w, y + h * 3), fill=colour, width=int(rng.integers(1, 6)))


def _opaque(package: Image.Image) -> np.ndarray:
    return np.asarray(package.getchannel("A")) > 32


def _frame_part(mask: np.ndarray, x: int, y: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas rows and columns of the mask's pixels that fall inside the frame."""
    rows, cols = np.nonzero(mask)
    rows, cols = rows + y, cols + x
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    return rows[inside], cols[inside]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place(scene: Image.Image, package: Image.Image, x: int, y: int) -> None:
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(package.width, scene.width - x), min(package.height, scene.height - y)
    if right > left and bottom > top:
        scene.alpha_composite(package.crop((left, top, right, bottom)), (max(0, x), max(0, y)))


def render_composite(identities: Sequence[Identity], rng: np.random.Generator, *, seed: int,
                     close_up: bool) -> tuple[Image.Image, list[list[float]]]:
    """One scene and the boxes of the products in it.

    A box is the product's whole extent in the frame (amodal, as in COCO) and is kept only while
    enough of the product stays visible: ``MIN_VISIBLE`` of it inside the frame and not covered by
    products pasted later. A product that ends up mostly hidden is left out of the labels.
    """
    width, height = SCENE_SHAPES[int(rng.integers(len(SCENE_SHAPES)))]
    scene = background(width, height, rng, None)
    _distractors(scene, rng)
    count = 1 if close_up else int(rng.integers(2, 7))
    owner = np.full((height, width), -1, np.int16)     # which product shows at each pixel
    placed: list[tuple[list[float], int]] = []           # (box, opaque pixels in frame)
    for _ in range(count):
        identity = identities[int(rng.integers(len(identities)))]
        package = _package(identity, rng, seed)
        fill = rng.uniform(0.5, 0.95) if close_up else rng.uniform(0.15, 0.55)
        scale = min(width * fill / package.width, height * fill / package.height)
        package = package.resize((max(1, int(package.width * scale)), max(1, int(package.height * scale))),
                                 Image.Resampling.BILINEAR)
        mask = _opaque(package)
        for _attempt in range(4):  # a few tries at a spot that does not bury earlier products
            if close_up:
                x = int((width - package.width) / 2 + rng.normal(0, 0.1) * width)
                y = int((height - package.height) / 2 + rng.normal(0, 0.1) * height)
            else:
                x = int(rng.uniform(-0.15 * package.width, width - 0.85 * package.width))
                y = int(rng.uniform(-0.15 * package.height, height - 0.85 * package.height))
            rows, cols = _frame_part(mask, x, y, width, height)
            if rows.size == 0:
                continue
            box = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
            if all(_iou(box, other) < 0.4 for other, _ in placed):
                break
        else:
            continue
        if rows.size < MIN_VISIBLE * mask.sum() or min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
            continue  # not pasted: an unlabelled sliver of a product would teach the wrong thing
        _place(scene, package, x, y)
        owner[rows, cols] = len(placed)
        placed.append((box, int(rows.size)))
    shown = np.bincount(owner[owner >= 0].ravel(), minlength=len(placed)) if placed else np.zeros(0)
    boxes = [box for index, (box, pixels) in enumerate(placed) if shown[index] >= MIN_VISIBLE * pixels]
    if rng.random() < 0.3:
        _occlude(scene, rng)
    return _photometric(scene, rng), boxes


# --- building a set ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_pool(identities: Sequence[Identity], settings: CompositeSettings) -> None:
    _WORKER["identities"] = list(identities)
    _WORKER["settings"] = settings


def render_job(index: int) -> tuple[str, bytes, int, int, list[list[float]]]:
    settings: CompositeSettings = _WORKER["settings"]
    rng = np.random.default_rng([settings.seed, 0xDE7, index])
    close_up = bool(rng.random() < settings.close_up_fraction)
    image, boxes = render_composite(_WORKER["identities"], rng, seed=settings.seed, close_up=close_up)
    return f"images/{index:06d}.jpg", encode_jpeg(image, rng), image.width, image.height, boxes


def build_composites(identities: Sequence[Identity], settings: CompositeSettings, *,
                     progress: bool = False) -> dict[str, Any]:
    """Render ``settings.images`` scenes into ``settings.out``; returns the summary written to build.json."""
    if not identities:
        raise ValueError("no identities to draw products from")
    out = Path(settings.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    indices = range(settings.images)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.images, desc="composites", unit="img", file=sys.stderr)
    lines, box_count = [], 0
    if settings.workers > 1:
        context = multiprocessing.get_context("fork")
        with context.Pool(settings.workers, initializer=_init_pool, initargs=(identities, settings)) as pool:
            results = list(_collect(pool.imap(render_job, indices, chunksize=16), out, bar))
    else:
        _init_pool(identities, settings)
        results = list(_collect(map(render_job, indices), out, bar))
    for rel, width, height, boxes in results:
        lines.append(json.dumps({"file": rel, "width": width, "height": height, "boxes": boxes}))
        box_count += len(boxes)
    if bar is not None:
        bar.close()
    (out / BOXES_NAME).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    summary = {"images": len(lines), "boxes": box_count, "seed": settings.seed,
               "close_up_fraction": settings.close_up_fraction, "identities": len(identities),
               "seconds": round(time.perf_counter() - started, 1)}
    (out / INFO_NAME).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _collect(results: Any, out: Path, bar: Any):
    for rel, data, width, height, boxes in results:
        (out / rel).write_bytes(data)
        if bar is not None:
            bar.update(1)
        yield rel, width, height, boxes


def read_boxes(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``boxes.jsonl`` file, paths made absolute."""
    path = Path(path)
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            record["path"] = str(path.parent / record["file"])
            records.append(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data_builder.composites", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--close-up-fraction", type=float, default=0.45)
    parser.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES))
    parser.add_argument("--folder", action="append", default=[], help="extra source folder (one sub-folder per identity)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        identities = load_identities(args.sources, Path(args.cache), folders=[Path(f) for f in args.folder])
    except SourceMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = CompositeSettings(out=Path(args.out), images=args.images, seed=args.seed,
                                 close_up_fraction=args.close_up_fraction, workers=args.workers)
    summary = build_composites(eligible(identities, min_designs=1), settings, progress=True)
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
