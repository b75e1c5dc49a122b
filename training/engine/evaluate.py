"""Retrieval evaluation (recall@k, mAP) as in PaddleClas' retrieval eval, for any Extractor.

Paddle-free on purpose: the same code scores the colour-histogram baseline, an exported
model and the in-training model (through ``extractor_net.ModelExtractor``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

MODES = ("leave_one_out", "split")


class Extractor(Protocol):
    """The engine's Extractor contract (``recognition.engine.types.Extractor``)."""

    feature_dim: int

    def extract(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


class LoadableDataset(Protocol):
    labels: np.ndarray
    label_names: list[str]

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray: ...


def _dense_labels(*arrays: Sequence[Any]) -> list[np.ndarray]:
    """Map arbitrary labels (str or int) of several arrays to shared int ids."""
    joined = np.concatenate([np.asarray(a, dtype=object).reshape(-1) for a in arrays])
    _, ids = np.unique(joined.astype(str), return_inverse=True)
    out, start = [], 0
    for a in arrays:
        out.append(ids[start:start + len(a)].astype(np.int64))
        start += len(a)
    return out


def retrieval_metrics(query_feats: np.ndarray, query_labels: Sequence[Any], gallery_feats: np.ndarray,
                      gallery_labels: Sequence[Any], *, exclude_self: bool,
                      ks: Sequence[int] = (1, 5), block_size: int | None = None,
                      exclude_items: Sequence[int] | None = None) -> dict[str, float | int]:
    """recall@k and mAP of inner-product retrieval, PaddleClas' definitions.

    recall@k = share of queries with a same-label gallery item in the top k (the CMC);
    AP = mean over the query's relevant items of precision at each one's rank, over the
    full ranking. Queries without any relevant gallery item are left out of both, as
    PaddleClas does; their count is returned as ``queries_without_match``. With
    ``exclude_self`` query i *is* gallery item i and is removed from its own ranking
    (PaddleClas only zeroes its similarity). ``exclude_items[i]`` (>= 0) removes that gallery item from
    query i's ranking the same way (a query made from a gallery photo). Ties rank the lower gallery index first.
    """
    queries = np.asarray(query_feats, dtype=np.float32)
    gallery = np.asarray(gallery_feats, dtype=np.float32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"feature shapes do not match: {queries.shape} vs {gallery.shape}")
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("one label per feature row is required")
    if exclude_self and len(queries) != len(gallery):
        raise ValueError("exclude_self needs the queries to be the gallery")
    excluded = np.arange(len(queries)) if exclude_self else (
        np.asarray(exclude_items, dtype=np.int64) if exclude_items is not None else None)
    if excluded is not None and len(excluded) != len(queries):
        raise ValueError("exclude_items needs one entry per query")
    q_ids, g_ids = _dense_labels(query_labels, gallery_labels)
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {ks}")
    hits = {k: 0 for k in ks}
    ap_sum, valid, skipped = 0.0, 0, 0
    ranks = np.arange(1, len(gallery) + 1, dtype=np.float64)
    # About 16M ranked entries per block keeps a 100k gallery under ~0.5 GB of temporaries.
    block_size = block_size or max(1, min(1024, (1 << 24) // max(len(gallery), 1)))
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        similarity = queries[start:stop] @ gallery.T
        rows = np.arange(stop - start)
        drop = excluded[start:stop] if excluded is not None else None
        if drop is not None:
            similarity[rows[drop >= 0], drop[drop >= 0]] = -np.inf
        order = np.argsort(-similarity, axis=1, kind="stable")
        relevant = g_ids[order] == q_ids[start:stop, None]
        if drop is not None:
            relevant &= order != drop[:, None]
        n_relevant = relevant.sum(axis=1)
        keep = n_relevant > 0
        skipped += int((~keep).sum())
        relevant, n_relevant = relevant[keep], n_relevant[keep]
        valid += len(relevant)
        for k in ks:
            hits[k] += int(relevant[:, :k].any(axis=1).sum())
        precision = np.cumsum(relevant, axis=1) / ranks
        ap_sum += float(((precision * relevant).sum(axis=1) / n_relevant).sum())
    metrics: dict[str, float | int] = {f"recall@{k}": (hits[k] / valid if valid else 0.0) for k in ks}
    metrics["mAP"] = ap_sum / valid if valid else 0.0
    metrics["queries"] = valid
    metrics["queries_without_match"] = skipped
    return metrics


def leave_one_out(feats: np.ndarray, labels: Sequence[Any], *, ks: Sequence[int] = (1, 5)) -> dict[str, float | int]:
    """Every image queries all the others (the drink-dev protocol)."""
    return retrieval_metrics(feats, labels, feats, labels, exclude_self=True, ks=ks)


def split_gallery_query(labels: Sequence[Any], *, seed: int = 0,
                        query_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-label split into (gallery indices, query indices).

    A label with n >= 2 images sends ``n * query_fraction`` (rounded half up) of them (at least 1, at
    most n - 1) to the queries; a single image stays in the gallery as a distractor. Each
    label's draw depends only on (seed, label), not on the other labels.
    """
    if not 0.0 < query_fraction < 1.0:
        raise ValueError(f"query_fraction must be in (0, 1), got {query_fraction}")
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(str(label), []).append(index)
    gallery: list[int] = []
    query: list[int] = []
    for label, members in by_label.items():
        if len(members) < 2:
            gallery.extend(members)
            continue
        rng = np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))])
        shuffled = [members[i] for i in rng.permutation(len(members))]
        # half-up rounding (Python's round() is half-to-even: 2.5 -> 2 but 3.5 -> 4)
        n_query = min(len(members) - 1, max(1, int(len(members) * query_fraction + 0.5)))
        query.extend(shuffled[:n_query])
        gallery.extend(shuffled[n_query:])
    return np.asarray(sorted(gallery), dtype=np.int64), np.asarray(sorted(query), dtype=np.int64)


def extract_features(extractor: Extractor, dataset: LoadableDataset, *, batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Features of every image, ``batch_size`` crops per ``extract`` call, rows re-normalised."""
    total = len(dataset)
    chunks = []
    for start in range(0, total, batch_size):
        crops = [dataset.load(i) for i in range(start, min(start + batch_size, total))]
        chunks.append(np.asarray(extractor.extract(crops), dtype=np.float32))
        if progress is not None:
            progress(start + len(crops), total)
    feats = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, extractor.feature_dim), np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, 1e-12)


def evaluate_extractor(extractor: Extractor, dataset: LoadableDataset, *, mode: str = "leave_one_out",
                       ks: Sequence[int] = (1, 5), batch_size: int = 32, seed: int = 0,
                       query_fraction: float = 0.5,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Extract, then score ``leave_one_out`` or a seeded gallery/query ``split``; JSON-ready dict."""
    mode = mode.replace("-", "_")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    started = time.perf_counter()
    feats = extract_features(extractor, dataset, batch_size=batch_size, progress=progress)
    extract_seconds = time.perf_counter() - started
    labels = np.asarray(dataset.labels)
    if mode == "leave_one_out":
        metrics = leave_one_out(feats, labels, ks=ks)
    else:
        gallery, query = split_gallery_query(labels, seed=seed, query_fraction=query_fraction)
        metrics = retrieval_metrics(feats[query], labels[query], feats[gallery], labels[gallery],
                                    exclude_self=False, ks=ks)
    return {"mode": mode, "images": int(len(labels)), "identities": int(len(np.unique(labels))),
            **metrics, "extract_seconds": round(extract_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3)}


def format_report_table(rows: Sequence[tuple[str, dict[str, Any]]], ks: Sequence[int] = (1, 5)) -> str:
    """Plain-text table, one line per (name, report): images, identities, recall@k, mAP, seconds."""
    headers = ["model", "mode", "images", "identities", "queries",
               *(f"recall@{k}" for k in ks), "mAP", "seconds"]
    body = []
    for name, report in rows:
        body.append([name, str(report.get("mode", "")), str(report["images"]), str(report["identities"]),
                     str(report.get("queries", "")),
                     *(f"{report[f'recall@{k}']:.4f}" for k in ks), f"{report['mAP']:.4f}",
                     f"{report.get('seconds', 0.0):.1f}"])
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in body:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


__all__ = ["MODES", "evaluate_extractor", "extract_features", "format_report_table", "leave_one_out",
           "retrieval_metrics", "split_gallery_query"]
