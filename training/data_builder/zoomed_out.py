"""Zoomed-out queries from real photos: each photo shrunk to 15-30 % of a larger scene of other products.

``python -m training.data_builder.zoomed_out --labels ../shared/data/drink-dev/gallery/labels.txt
--split training/splits/drink-dev.json --part held_out --out var/zoomed-out --seed 0``

Real shots are rarely the tight close-ups a gallery holds: the product the camera points at stands among
others. The scene is a grid of photos of *other* products (from the same label file), and the query photo
is pasted over it at a random place. Writes ``queries.txt`` (``path<TAB>label``, paths relative to the
output folder), ``sources.tsv`` (query path<TAB>source photo path relative to the labels' folder, so an
evaluation can leave the source photo out of the gallery) and ``build.json``. Seeded: the output is a pure
function of (labels, split, seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from recognition.engine.imageio import load_image_file
from recognition.engine.preprocess import resize

SCENE_SIDE = 960


def _read_labels(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            relative, label = line.split("\t")[:2] if "\t" in line else line.split(None, 1)
            rows.append((relative.strip(), label.strip()))
    return rows


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return resize(image, (max(1, height), max(1, width)), "bilinear")


def build_scene(query: np.ndarray, others: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """The query at 15-30 % of the scene's area over a 3 x 3 grid of other products; returns (scene, box)."""
    side = SCENE_SIDE
    scene = np.zeros((side, side, 3), np.uint8)
    cell = side // 3
    for index, other in enumerate(others[:9]):
        r, c = divmod(index, 3)
        scene[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = _fit(other, cell, cell)
    share = rng.uniform(0.15, 0.30)
    h, w = query.shape[:2]
    scale = np.sqrt(share * side * side / (h * w))
    qh, qw = min(side, max(8, round(h * scale))), min(side, max(8, round(w * scale)))
    top = int(rng.integers(0, side - qh + 1))
    left = int(rng.integers(0, side - qw + 1))
    scene[top:top + qh, left:left + qw] = _fit(query, qw, qh)
    return scene, [left, top, left + qw, top + qh]


def build(labels: Path, out: Path, *, products: set[str] | None, seed: int = 0) -> dict:
    rows = _read_labels(labels)
    root = labels.parent
    chosen = [(i, rel, lab) for i, (rel, lab) in enumerate(rows) if products is None or lab in products]
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    queries, sources, boxes = [], [], {}
    try:
        from tqdm import tqdm

        iterator = tqdm(chosen, desc="zoomed-out", unit="photo", file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a pinned dependency
        iterator = chosen
    for index, relative, label in iterator:
        rng = np.random.default_rng([seed, index])
        strangers = [i for i, (_, other) in enumerate(rows) if other != label]
        picks = rng.choice(strangers, size=9, replace=False)
        others = [load_image_file(root / rows[int(i)][0]) for i in picks]
        scene, box = build_scene(load_image_file(root / relative), others, rng)
        name = f"images/{index:05d}.jpg"
        Image.fromarray(scene).save(out / name, quality=90)
        queries.append(f"{name}\t{label}")
        sources.append(f"{name}\t{relative}")
        boxes[name] = box
    (out / "queries.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (out / "sources.tsv").write_text("\n".join(sources) + "\n", encoding="utf-8")
    info = {"labels": str(labels), "seed": seed, "photos": len(queries), "scene_side": SCENE_SIDE,
            "query_area": [0.15, 0.30], "boxes": boxes}
    (out / "build.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", type=Path, help="product split JSON; only --part's products become queries")
    parser.add_argument("--part", default="held_out", choices=("held_out", "train"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    products = None
    if args.split:
        products = set(json.loads(args.split.read_text(encoding="utf-8"))[args.part])
    info = build(args.labels, args.out, products=products, seed=args.seed)
    print(f"{info['photos']} zoomed-out photos in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
