"""Is a second retrieval channel worth it? Bag of visual words over RootSIFT beside the global features.

A product that the global features rank below K is never verified. This bench builds a visual vocabulary
(Faiss k-means on the gallery's RootSIFT descriptors), a tf-idf inverted index over the gallery (held-out half of
drink-dev, whole photos as the platform stores them), and for every query photo verifies the candidates of each
channel: the global top-K of the whole photo, the BoVW top-K, and their union. It prints recall@1 of the
best-verified candidate (most inliers, >= 15) and the time each channel adds, side by side.

    .venv/bin/python bench/bovw_channel.py --queries var/zoomed-out/queries.txt --queries var/shelf-held-out/queries.txt
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recognition.engine.local_features import extract_local_features  # noqa: E402
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams  # noqa: E402
from recognition.engine.verify import GeometricVerifier  # noqa: E402
from training.engine.cli import _query_sources, build_extractor, split_products  # noqa: E402
from training.engine.dataset import ImageDataset  # noqa: E402
from training.engine.pipeline_eval import build_references  # noqa: E402


class VisualWords:
    """tf-idf bag of visual words with an inverted file (sparse matrix product) over reference images."""

    def __init__(self, descriptors: list[np.ndarray], words: int, seed: int = 0) -> None:
        stacked = np.concatenate([d for d in descriptors if len(d)]).astype(np.float32)
        stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-6)
        kmeans = faiss.Kmeans(stacked.shape[1], words, niter=12, seed=seed, spherical=True, verbose=False)
        kmeans.train(stacked)
        self.quantiser = faiss.IndexFlatIP(stacked.shape[1])
        self.quantiser.add(kmeans.centroids)
        counts = np.stack([self._histogram(d) for d in descriptors])
        self.idf = np.log(len(descriptors) / np.maximum((counts > 0).sum(axis=0), 1)).astype(np.float32)
        self.matrix = self._weigh(counts)

    def _histogram(self, descriptors: np.ndarray) -> np.ndarray:
        histogram = np.zeros(self.quantiser.ntotal, np.float32)
        if len(descriptors):
            values = descriptors.astype(np.float32)
            values /= np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-6)
            _, words = self.quantiser.search(values, 1)
            np.add.at(histogram, words[:, 0], 1.0)
        return histogram

    def _weigh(self, counts: np.ndarray) -> np.ndarray:
        weighted = np.sqrt(counts) * self.idf  # burstiness-damped tf, times idf
        return weighted / np.maximum(np.linalg.norm(weighted, axis=-1, keepdims=True), 1e-6)

    def search(self, descriptors: np.ndarray, k: int, hidden: int) -> list[int]:
        scores = self.matrix @ self._weigh(self._histogram(descriptors))
        if hidden >= 0:
            scores[hidden] = -np.inf
        return [int(i) for i in np.argsort(-scores)[:k]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", default=str(REPO.parent / "shared/data/drink-dev/gallery"))
    parser.add_argument("--split", default=str(REPO / "training/splits/drink-dev.json"))
    parser.add_argument("--queries", action="append", required=True)
    parser.add_argument("--model", default=str(REPO / "models/extractor/shitu-rec-lite0-dd53"))
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--words", type=int, default=2048)
    args = parser.parse_args()
    gallery_root = Path(args.gallery)
    dataset = ImageDataset.from_label_file(gallery_root / "labels.txt", image_root=gallery_root)
    keep = split_products(args.split, "held_out")
    dataset = ImageDataset([s for s in dataset.samples if s.label in keep])
    params = PipelineParams()
    extractor = build_extractor(args.model)
    refs = build_references(GivenBoxDetector([]), extractor, dataset, params=params)
    started = time.perf_counter()
    words = VisualWords([f.descriptors if f is not None else np.zeros((0, 128), np.uint8) for f in refs.local_features],
                        args.words)
    print(f"gallery {len(refs.labels)} photos; vocabulary of {args.words} words built in "
          f"{time.perf_counter() - started:.1f} s; K = {args.k}")
    verifier = GeometricVerifier()
    print(f"{'query set':18}{'global':>9}{'bovw':>9}{'union':>9}{'global ms':>11}{'bovw ms':>9}{'union/global verify ms':>24}")
    for path in args.queries:
        query_set = ImageDataset.from_label_file(path)
        sources = _query_sources(dataset, gallery_root, Path(path), query_set)
        right = {"global": 0, "bovw": 0, "union": 0}
        times = {"global": [], "bovw": [], "verify_global": [], "verify_union": []}
        for position in range(len(query_set)):
            image, truth, hidden = query_set.load(position), query_set.label_names[position], int(sources[position])
            query = extract_local_features(image, max_features=params.local_features, long_side=params.local_long_side)
            t0 = time.perf_counter()
            vector = extractor.extract([image])[0]
            scores = refs.vectors @ vector
            if hidden >= 0:
                scores[hidden] = -np.inf
            by_global = [int(i) for i in np.argsort(-scores)[:args.k]]
            t1 = time.perf_counter()
            by_words = words.search(query.descriptors, args.k, hidden)
            t2 = time.perf_counter()
            times["global"].append(1000 * (t1 - t0))
            times["bovw"].append(1000 * (t2 - t1))
            for name, ids in (("global", by_global), ("bovw", by_words),
                              ("union", list(dict.fromkeys(by_global + by_words)))):
                t3 = time.perf_counter()
                found = verifier.verify(query, [refs.local_features[i] for i in ids], min_matches=params.min_inliers)
                if name != "bovw":
                    times[f"verify_{name}"].append(1000 * (time.perf_counter() - t3))
                best = max(((r.inliers, i) for r, i in zip(found, ids) if r is not None), default=(0, -1))
                right[name] += best[0] >= params.min_inliers and refs.labels[best[1]] == truth
        count = max(len(query_set), 1)
        ratio = statistics.median(times["verify_union"]) / max(statistics.median(times["verify_global"]), 1e-6)
        print(f"{Path(path).parent.name:18}" + "".join(f"{right[n] / count:9.3f}" for n in ("global", "bovw", "union"))
              + f"{statistics.median(times['global']):11.1f}{statistics.median(times['bovw']):9.1f}{ratio:24.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
