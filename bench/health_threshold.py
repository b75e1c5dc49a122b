"""Where gallery health draws "near-duplicate" (galleries/health.py NEAR_DUPLICATE_COSINE), on real drink photos.

Embeds every gallery photo with the shipped extractor, plus two copies of each: saved again (JPEG q70 at 0.8x) and
re-cropped (4% off each side, q85). Prints the cosine of each copy to its original, of each photo to its nearest
other photo of the same product and to its nearest photo of another product, and per threshold how many copies it
finds and how many genuine pairs reach it. Then runs the report's own computations (galleries/health.py) on the
originals with their RootSIFT features, as the worker does after an import, and prints what it finds and its cost.

    .venv/bin/python bench/health_threshold.py   # about 4 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shitu_platform.settings")
django.setup()  # galleries.health imports its models; nothing here touches a database

from galleries.health import (  # noqa: E402
    NEIGHBOURS, GalleryVectors, confusable_pairs, near_duplicates, nearest_neighbours, unverified_references)
from recognition.engine.imageio import load_image  # noqa: E402
from recognition.engine.inference import PaddleExtractor  # noqa: E402
from recognition.engine.local_features import extract_local_features  # noqa: E402
from recognition.engine.pipeline import PipelineParams  # noqa: E402


def saved_again(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((max(1, int(image.width * 0.8)), max(1, int(image.height * 0.8))), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def recropped(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    image = image.crop((int(width * 0.04), int(height * 0.04), int(width * 0.96), int(height * 0.96)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def percentiles(values: np.ndarray) -> str:
    return " ".join(f"p{p}={np.percentile(values, p):.3f}" for p in (0, 1, 5, 50, 95, 99, 100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", default=str(ROOT.parent / "shared/data/drink-dev/gallery"))
    parser.add_argument("--model", default=str(ROOT / "models/extractor/shitu-rec-lite0-dd53"))
    args = parser.parse_args()
    root = Path(args.gallery)
    rows = [line.split("\t") for line in (root / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = np.array([label for _, label in rows])
    extractor = PaddleExtractor.from_dir(args.model, threads=2)

    def embed(payloads: list[bytes]) -> np.ndarray:
        pixels = [load_image(data) for data in payloads]
        return np.concatenate([extractor.extract(pixels[i:i + 16]) for i in range(0, len(pixels), 16)])

    started = time.time()
    raw = [(root / path).read_bytes() for path, _ in rows]
    originals, copies, crops = embed(raw), embed([saved_again(d) for d in raw]), embed([recropped(d) for d in raw])
    print(f"{len(raw)} photos, {len(set(labels))} products, embedded 3x in {time.time() - started:.0f} s")
    copy_cos, crop_cos = (originals * copies).sum(1), (originals * crops).sum(1)
    similarity = originals @ originals.T
    np.fill_diagonal(similarity, -np.inf)
    same = labels[:, None] == labels[None, :]
    same_nearest = np.where(same, similarity, -np.inf).max(1)
    same_nearest = same_nearest[np.isfinite(same_nearest)]
    other_nearest = np.where(~same, similarity, -np.inf).max(1)
    print("saved again (q70, 0.8x)          :", percentiles(copy_cos))
    print("re-cropped (4% per side, q85)    :", percentiles(crop_cos))
    print("nearest other photo, same product:", percentiles(same_nearest))
    print("nearest photo of another product :", percentiles(other_nearest))
    for threshold in (0.8, 0.85, 0.9, 0.95, 0.97):
        print(f"cosine >= {threshold}: finds {np.mean(copy_cos >= threshold):.3f} of copies saved again, "
              f"{np.mean(crop_cos >= threshold):.3f} of re-cropped ones; reached by {np.mean(same_nearest >= threshold):.3f} "
              f"of distinct same-product photos and {np.mean(other_nearest >= threshold):.3f} of cross-product nearest pairs")

    report(originals, labels, raw)


def report(vectors: np.ndarray, labels: np.ndarray, raw: list[bytes]) -> None:
    started = time.perf_counter()
    features = [extract_local_features(load_image(data), max_features=500) for data in raw]
    extracted = time.perf_counter()
    names, product_ids = np.unique(labels, return_inverse=True)
    rows = np.arange(len(labels), dtype=np.int64)
    data = GalleryVectors(rows, rows, product_ids.astype(np.int64), np.ascontiguousarray(vectors, dtype=np.float32))
    scores, neighbours = nearest_neighbours(data.vectors, k=NEIGHBOURS)
    pairs, duplicates = confusable_pairs(data, scores, neighbours), near_duplicates(data, scores, neighbours)
    searched = time.perf_counter()
    unverified = unverified_references(data, lambda ids: {int(i): features[int(i)] for i in ids},
                                       min_inliers=PipelineParams().min_inliers)
    verified = time.perf_counter()
    few = np.sum(np.bincount(product_ids) < 3)
    print(f"health report: {len(pairs)} confusable product pairs, {len(duplicates)} near-duplicates across labels, "
          f"{few} products with < 3 photos, {len(unverified)} photos their product does not verify "
          f"({sum(u['reason'] == 'no_local_features' for u in unverified)} without enough keypoints)")
    for pair in pairs[:5]:
        print(f"  confusable {pair['cosine']:.3f}: {names[pair['product_a']]} / {names[pair['product_b']]}")
    print(f"cost: RootSIFT of every photo {extracted - started:.1f} s (done at ingest on the platform), "
          f"kNN + pairs {(searched - extracted) * 1000:.0f} ms, verification {verified - searched:.1f} s")


if __name__ == "__main__":
    main()
