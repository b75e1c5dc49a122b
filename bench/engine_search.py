"""Benchmark VectorIndex types side by side (not a test): build time, batch-1 latency, recall@1 vs Flat, serialised size.

Run: .venv/bin/python bench/engine_search.py [--sizes 1000,100000,1000000] [--queries 200]
Data: clustered synthetic 512-d unit vectors; queries are near-duplicates of stored vectors (a re-photographed
product), and recall@1 counts agreement with exact Flat search. Designed to finish in ~8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recognition.engine.search import FLAT_MAX_VECTORS, VectorIndex, default_ivf_nlist  # noqa: E402

DIM = 512
K = 5
HNSW_MAX_VECTORS = 200_000  # HNSW32 build is 11-17 s per 100k on 2 cores and superlinear; 1M would take the budget alone


@dataclass
class Row:
    size: int
    name: str
    built_as: str
    build_s: float
    median_ms: float
    p95_ms: float
    recall_at_1: float
    recall_hard: float
    memory_bytes: int
    note: str = ""


def clustered_vectors(n: int, rng: np.random.Generator, centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, centres): unit vectors around n/50 random centres (products with several photos each), built in chunks."""
    if centres is None:
        centres = rng.standard_normal((max(10, n // 50), DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_centres = len(centres)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) * np.float32(1.0 / np.sqrt(DIM))
        chunk = centres[rng.integers(0, n_centres, stop - start)] + noise
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out, centres


def near_duplicates(base: np.ndarray, count: int, rng: np.random.Generator, noise: float = 0.6) -> np.ndarray:
    """Queries at cosine ~0.86 to a random stored vector (a new photo of a known product)."""
    picks = base[rng.integers(0, len(base), count)]
    noisy = picks + rng.standard_normal(picks.shape, dtype=np.float32) * np.float32(noise / np.sqrt(DIM))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def batch1_latency_ms(index: VectorIndex, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    top1 = np.empty(len(queries), dtype=np.int64)
    times = []
    index.search(queries[:1], K)  # warm-up
    for row in range(len(queries)):
        start = time.perf_counter()
        _, ids = index.search(queries[row : row + 1], K)
        times.append((time.perf_counter() - start) * 1000)
        top1[row] = ids[0, 0]
    return float(np.median(times)), float(np.percentile(times, 95)), top1


def measure(size: int, name: str, index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray,
            truth: np.ndarray | None, hard: np.ndarray, hard_truth: np.ndarray | None, note: str = "") -> tuple[Row, np.ndarray, np.ndarray]:
    faiss.omp_set_num_threads(2)
    start = time.perf_counter()
    index.threads = 2  # builds use both cores
    index.build(ids, vectors)
    build_s = time.perf_counter() - start
    index.threads = 1
    median, p95, top1 = batch1_latency_ms(index, queries)
    recall = 1.0 if truth is None else float((top1 == truth).mean())
    hard_top1 = index.search(hard, 1)[1][:, 0]
    recall_hard = 1.0 if hard_truth is None else float((hard_top1 == hard_truth).mean())
    memory = len(index.to_bytes())
    return Row(size, name, index.index_type, build_s, median, p95, recall, recall_hard, memory, note), top1, hard_top1


def run_size(size: int, n_queries: int, rng: np.random.Generator, budget_end: float) -> list[Row]:
    vectors, centres = clustered_vectors(size, rng)
    ids = np.arange(size, dtype=np.int64)
    queries = near_duplicates(vectors, n_queries, rng)
    hard = clustered_vectors(1000, rng, centres)[0]  # fresh samples: ~50 stored vectors tie at cos ~0.5
    rows: list[Row] = []
    flat_row, truth, hard_truth = measure(size, "Flat", VectorIndex(DIM, "Flat"), ids, vectors, queries, None, hard, None)
    rows.append(flat_row)
    if size <= HNSW_MAX_VECTORS:
        rows.append(measure(size, "HNSW32 ef128", VectorIndex(DIM, "HNSW32"), ids, vectors, queries, truth, hard, hard_truth)[0])
    else:
        rows.append(Row(size, "HNSW32 ef128", "-", float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0,
                        "skipped: 11-17 s per 100k, superlinear: >3 min at 1M, over budget"))
    nlist = default_ivf_nlist(size)
    rows.append(measure(size, f"IVF{nlist} np32", VectorIndex(DIM, "IVF"), ids, vectors, queries, truth, hard, hard_truth,
                        "falls back to Flat: too few vectors to train" if nlist <= 32 else "")[0])
    if size == 100_000 and time.perf_counter() < budget_end - 120:
        paddle_nlist = min(size // 8, 65_536)
        rows.append(measure(size, f"IVF{paddle_nlist} np32 (n/8)", VectorIndex(DIM, "IVF", ivf_nlist=paddle_nlist),
                            ids, vectors, queries, truth, hard, hard_truth, "PaddleClas nlist=n/8")[0])
    if size == 100_000:
        rows.extend(thread_rows(size, ids, vectors, queries))
    return rows


def thread_rows(size: int, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> list[Row]:
    """Flat with 1 vs 2 faiss threads, batch 1 and batch 100 (per-query ms)."""
    index = VectorIndex(DIM, "Flat")
    index.build(ids, vectors)
    rows = []
    for threads in (1, 2):
        index.threads = threads
        median, p95, _ = batch1_latency_ms(index, queries[:100])
        batch_times = []
        for _ in range(3):
            start = time.perf_counter()
            index.search(queries[:100], K)
            batch_times.append((time.perf_counter() - start) * 1000 / 100)
        rows.append(Row(size, f"Flat threads={threads}", "Flat", float("nan"), median, p95, 1.0, 1.0, 0,
                        f"batch-100: {min(batch_times):.2f} ms/query"))
    return rows


def print_table(rows: list[Row]) -> None:
    flat = {r.size: r for r in rows if r.name == "Flat"}
    header = f"{'n':>9} {'index':<24} {'built as':<8} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'R@1':>6} {'R@1hard':>7} {'bytes':>13} {'build/F':>8} {'p50/F':>7} {'mem/F':>6}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = flat[r.size]
        ratio = lambda a, b: f"{a / b:.2f}" if b and a == a and b == b and a > 0 else "-"  # noqa: E731
        mem = f"{r.memory_bytes:,}" if r.memory_bytes else "-"
        print(f"{r.size:>9,} {r.name:<24} {r.built_as:<8} {r.build_s:>8.2f} {r.median_ms:>8.3f} {r.p95_ms:>8.3f} "
              f"{r.recall_at_1:>6.3f} {r.recall_hard:>7.3f} {mem:>13} {ratio(r.build_s, base.build_s):>8} {ratio(r.median_ms, base.median_ms):>7} "
              f"{ratio(r.memory_bytes, base.memory_bytes):>6}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip sizes that would start after this")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    budget_end = started + args.budget_s
    rows: list[Row] = []
    skipped = []
    for size in (int(s) for s in args.sizes.split(",")):
        if size >= 1_000_000 and time.perf_counter() > budget_end - 200:
            skipped.append(size)
            continue
        queries = args.queries if size < 1_000_000 else max(20, args.queries // 5)
        rows.extend(run_size(size, queries, rng, budget_end))
    print(f"faiss {faiss.__version__}, dim {DIM}, k={K}, batch-1 latency at threads=1, builds at threads=2, "
          f"queries: {args.queries} (1M: {max(20, args.queries // 5)})")
    print("R@1: top-1 agrees with Flat on near-duplicate queries (cos ~0.86 to a stored vector);")
    print("R@1hard: 1000 new samples of the clusters, no near-duplicate stored (worst case: many near-ties), batched")
    print(f"auto picks Flat below {FLAT_MAX_VECTORS:,} vectors, IVF (nlist=4*sqrt(n), nprobe 32) above")
    print_table(rows)
    for size in skipped:
        print(f"{size:,}: skipped, would not fit the time budget")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
