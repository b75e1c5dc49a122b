"""Geometric verification on real drink photos: leave-one-out recall without and with verification, and its cost.

Each gallery photo queries all the others: top-K by cosine of the extractor's global features, then RootSIFT +
MAGSAC verification of those K re-ranks them exactly as RecognitionPipeline does (pipeline.rerank). Prints
recall@1/@5 for cosine only and verified at K=20 and K=50, a min_inliers sweep with how often a wrong candidate
reaches that many inliers, timings p50/p95 (query features, verify), bytes per stored reference, and the
pipeline's verify_ms on composed 1-megapixel photos with 5 products (5 boxes + whole image, K=50 and K=20),
whose own photos are left out of the gallery so nothing matches itself, and what verification adds to the whole
recognition of each such photo (its total with verification minus its total without, run back to back), also
without the main-object zoom (``main_object_zoom=None``) on the same photos. The scenes run twice: with their 5
boxes given (no detection, so the photo's local features have nothing to run beside), and with the shipped
detector finding the boxes, as a tenant's photo goes.

    .venv/bin/python bench/verify_engine.py --split training/splits/drink-dev.json
    .venv/bin/python bench/verify_engine.py --model histogram   # a weak global descriptor, where verification matters most
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recognition.engine.imageio import load_image_file  # noqa: E402
from recognition.engine.local_features import LocalFeatures, extract_local_features  # noqa: E402
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline, rerank  # noqa: E402
from recognition.engine.search import VectorIndex  # noqa: E402
from recognition.engine.types import Box, Match  # noqa: E402
from recognition.engine.verify import GeometricVerifier  # noqa: E402

DATA = Path("/work/shared/data/drink-dev/gallery")
SWEEP = (8, 10, 12, 15, 20, 25)


def load(data: Path, split: str | None) -> tuple[list[str], list[str], list[np.ndarray]]:
    rows = [line.split("\t") for line in (data / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    if split:
        held_out = set(json.loads(Path(split).read_text(encoding="utf-8"))["held_out"])
        rows = [row for row in rows if row[1] in held_out]
    return [r[0] for r in rows], [r[1] for r in rows], [load_image_file(data / r[0]) for r in rows]


def global_extractor(model: str):
    if model == "histogram":
        from recognition.engine.baseline import ColourHistogramExtractor

        return ColourHistogramExtractor()
    from recognition.engine.inference import PaddleExtractor

    return PaddleExtractor.from_dir(model, threads=2)


def percentiles(values: Sequence[float]) -> str:
    return f"{np.percentile(values, 50):6.1f} / {np.percentile(values, 95):6.1f}"


def recall(rankings: list[list[Match]], truth: list[str]) -> tuple[float, float]:
    top1 = np.mean([bool(r) and r[0].label == t for r, t in zip(rankings, truth)])
    top5 = np.mean([t in {m.label for m in r[:5]} for r, t in zip(rankings, truth)])
    return float(top1), float(top5)


def leave_one_out(labels: list[str], vectors: np.ndarray, refs: list[LocalFeatures], verifier: GeometricVerifier,
                  ks: Sequence[int], min_inliers: int) -> dict:
    index = VectorIndex(vectors.shape[1], "Flat")
    index.build(np.arange(len(vectors), dtype=np.int64), vectors)
    scores, ids = index.search(vectors, max(ks) + 1)
    queries = [q for q in range(len(labels)) if labels.count(labels[q]) > 1]  # a product's only photo has no right answer
    out: dict = {"queries": len(queries), "cosine": [], "verify_ms": {k: [] for k in ks}, "ranked": {k: [] for k in ks}}
    for q in queries:
        row = [(int(i), float(s)) for s, i in zip(scores[q], ids[q]) if i != q][: max(ks)]
        cosine = [Match(i, labels[i], s) for i, s in row]
        out["cosine"].append(cosine)
        for k in ks:
            started = time.perf_counter()
            found = verifier.verify(refs[q], [refs[i] for i, _ in row[:k]], min_matches=min_inliers)
            out["verify_ms"][k].append((time.perf_counter() - started) * 1000)
            with_inliers = [Match(m.item_id, m.label, m.score, r.inliers if r else None) for m, r in zip(cosine[:k], found)]
            out["ranked"][k].append(with_inliers)
    out["truth"] = [labels[q] for q in queries]
    return out


def compose(images: list[np.ndarray], rng: np.random.Generator, size: tuple[int, int] = (1200, 860)) -> tuple[np.ndarray, list[Box]]:
    """A ~1-megapixel photo: five gallery photos resized into a row on a shelf-like backdrop, with their boxes."""
    import cv2

    width, height = size
    # Smooth colour blobs plus mild sensor noise: texture where SIFT finds some background keypoints, as on a shelf.
    blobs = cv2.resize(rng.integers(40, 220, (height // 80, width // 80, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(blobs.astype(np.int16) + rng.integers(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8)
    boxes, slot = [], width // len(images)
    for n, image in enumerate(images):
        scale = min((slot - 20) / image.shape[1], (height - 60) / image.shape[0])
        w, h = max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))
        x, y = n * slot + 10, int(rng.integers(20, height - h - 20 + 1))
        canvas[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        boxes.append(Box(x, y, x + w, y + h, score=0.9))
    return canvas, boxes


def scenes_run(extractor, labels: list[str], images: list[np.ndarray], vectors: np.ndarray, refs: list[LocalFeatures],
               scenes: int, verify_top_k: int, min_inliers: int, verifier: GeometricVerifier,
               detector=None) -> dict[str, list[float]]:
    """Pipeline verify_ms and accuracy (verification off vs on) on composed photos; same scenes for every K.

    With the given boxes (``detector`` None) a product counts when its own box is answered with its label; with
    a real ``detector`` its boxes are its own, so each distinct product of the photo counts when its label is
    among the photo's answers (``expected``: distinct products per photo).
    The photo's local features are computed beside detection, as in the service: with given boxes there is no
    detection to hide them behind, so verify_ms then includes most of their time."""
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {"verify": [], "query_features": [], "right_cosine": [], "right_verified": [],
                                   "total_cosine": [], "total_verified": [], "added": [], "expected": [],
                                   "right_unzoomed": [], "total_unzoomed": [], "added_unzoomed": [], "verify_unzoomed": []}
    lookup: Callable[[Sequence[int]], dict[int, LocalFeatures]] = lambda ids: {int(i): refs[int(i)] for i in ids}
    for scene in range(scenes):
        picked = [int(i) for i in rng.choice(len(images), 5, replace=False)]
        photo, boxes = compose([images[i] for i in picked], rng)
        keep = np.array([i for i in range(len(images)) if i not in picked], dtype=np.int64)
        index = VectorIndex(vectors.shape[1], "Flat")
        index.build(keep, vectors[keep])
        pipeline = RecognitionPipeline(detector or GivenBoxDetector(boxes), extractor, index,
                                       {int(i): labels[int(i)] for i in keep}, local_features=lookup, verifier=verifier)
        params = PipelineParams(verify_top_k=verify_top_k, min_inliers=min_inliers)
        expected = {labels[i] for i in picked}
        out["expected"].append(len(boxes) if detector is None else len(expected))
        verified = {}
        arms = [("right_verified", params), ("right_unzoomed", replace(params, main_object_zoom=None))]
        arms = arms if scene % 2 == 0 else arms[::-1]  # the two verified arms take turns going first
        for key, run_params in [("right_cosine", replace(params, verify=False)), *arms]:
            timed = verified[key] = pipeline.recognize_timed(photo, run_params)
            if detector is None:
                found = {obj.box: obj.label for obj in timed.objects}
                out[key].append(sum(found.get(box) == labels[i] for box, i in zip(boxes, picked)))
            else:
                out[key].append(len(expected & {obj.label for obj in timed.objects}))
            out[key.replace("right", "total")].append(timed.timings.total_ms)
        out["added"].append(out["total_verified"][-1] - out["total_cosine"][-1])
        out["added_unzoomed"].append(out["total_unzoomed"][-1] - out["total_cosine"][-1])
        out["verify"].append(verified["right_verified"].timings.verify_ms)
        out["verify_unzoomed"].append(verified["right_unzoomed"].timings.verify_ms)
        started = time.perf_counter()
        extract_local_features(photo)
        out["query_features"].append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/extractor/shitu-rec-lite0-dd53", help="extractor folder, or 'histogram'")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", help="JSON with 'train'/'held_out' product lists: use only held_out products")
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--min-inliers", type=int, default=PipelineParams().min_inliers)
    parser.add_argument("--scenes", type=int, default=30, help="composed 1-MP photos for the pipeline timing (0: skip)")
    parser.add_argument("--detector", default="models/detector/shitu-det-lite0",
                        help="detector folder for the scenes' second run, as a tenant gets it ('' to skip)")
    args = parser.parse_args()

    paths, labels, images = load(args.data, args.split)
    extractor = global_extractor(args.model)
    vectors = np.concatenate([extractor.extract(images[i : i + 32]) for i in range(0, len(images), 32)])
    refs, feature_ms = [], []
    for image in images:
        started = time.perf_counter()
        refs.append(extract_local_features(image))
        feature_ms.append((time.perf_counter() - started) * 1000)
    verifier = GeometricVerifier(ratio=args.ratio)
    exhaustive = GeometricVerifier(ratio=args.ratio, decisive_inliers=None)
    loo = leave_one_out(labels, vectors, refs, verifier, (20, 50), args.min_inliers)
    full = leave_one_out(labels, vectors, refs, exhaustive, (50,), 8)

    long_sides = [max(image.shape[:2]) for image in images]
    print(f"drink-dev{' held-out' if args.split else ''}: {len(images)} photos, {len(set(labels))} products, "
          f"{loo['queries']} leave-one-out queries; global model {args.model}; ratio {args.ratio}, min_inliers {args.min_inliers}")
    print(f"photo long side p50 {np.median(long_sides):.0f} px; keypoints per photo p50 {np.median([len(r) for r in refs]):.0f}; "
          f"stored bytes per reference mean {np.mean([len(r.to_bytes()) for r in refs]):.0f} (max {max(len(r.to_bytes()) for r in refs)})")
    print(f"{'ranking':28} {'recall@1':>9} {'recall@5':>9} {'verify ms p50 / p95':>20}")
    r1, r5 = recall(loo["cosine"], loo["truth"])
    print(f"{'cosine only':28} {r1:9.3f} {r5:9.3f} {'':>20}")
    for k in (20, 50):
        r1, r5 = recall([rerank(r, args.min_inliers) for r in loo["ranked"][k]], loo["truth"])
        print(f"{f'verified K={k} (early stop)':28} {r1:9.3f} {r5:9.3f} {percentiles(loo['verify_ms'][k]):>20}")
    r1, r5 = recall([rerank(r, args.min_inliers) for r in full["ranked"][50]], full["truth"])
    print(f"{'verified K=50 (exhaustive)':28} {r1:9.3f} {r5:9.3f} {percentiles(full['verify_ms'][50]):>20}")
    print(f"query features (gallery-sized photo) ms p50 / p95: {percentiles(feature_ms)}")

    print("min_inliers sweep (K=50 exhaustive): recall@1, and share of queries where some wrong candidate reaches it")
    wrong_best = [max([m.inliers or 0 for m in r if m.label != t] or [0]) for r, t in zip(full["ranked"][50], full["truth"])]
    for threshold in SWEEP:
        r1, _ = recall([rerank(r, threshold) for r in full["ranked"][50]], full["truth"])
        print(f"  {threshold:3d}: recall@1 {r1:.3f}   wrong >= {threshold}: {np.mean([w >= threshold for w in wrong_best]):.3f}")

    print(f"load average during the run (2-core machine, shared): {os.getloadavg()[0]:.2f}")
    if args.scenes:
        print(f"pipeline on {args.scenes} composed 1200x860 photos of 5 products (own photos left out of the gallery), "
              "their 5 boxes given or found by the detector, plus the whole image:")
        arms = [("given boxes", None, (20, 50))]
        if args.detector:
            from recognition.engine.inference import PaddleDetector

            arms.append((f"detector {Path(args.detector).name}", PaddleDetector.from_dir(args.detector, threads=2), (50,)))
        for arm, detector, ks in arms:
            print(f" {arm}:")
            for k in ks:
                t = scenes_run(extractor, labels, images, vectors, refs, args.scenes, k, args.min_inliers, verifier, detector)
                print(f"  K={k}: verify_ms p50 / p95 {percentiles(t['verify'])} (query features alone {percentiles(t['query_features'])}); "
                      f"products right {np.sum(t['right_cosine'])} -> {np.sum(t['right_verified'])} of {np.sum(t['expected'])}")
                print(f"        whole recognition p50 / p95 {percentiles(t['total_cosine'])} without verification, "
                      f"{percentiles(t['total_verified'])} with it; added per photo {percentiles(t['added'])} "
                      f"(ratio {np.median(t['total_verified']) / np.median(t['total_cosine']):.2f} at p50)")
                print(f"        without the main-object zoom (main_object_zoom=None, same photos): verify_ms "
                      f"{percentiles(t['verify_unzoomed'])}, added per photo {percentiles(t['added_unzoomed'])}; "
                      f"products right {np.sum(t['right_unzoomed'])}")

if __name__ == "__main__":
    main()
