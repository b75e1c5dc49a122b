"""Inner-product vector search over L2-normalised features (Flat / HNSW32 / IVF), with ids, removal and safe serialisation.

Choosing a type ("auto"): exact Flat below FLAT_MAX_VECTORS, IVF above. Flat is exact, needs no training and
removes in place; on 2 cores its batch-1 latency grows linearly (about 8 ms at 100k x 512), which is where
IVF (~0.3 ms, 11-17 s to build at 100k) pays for its training. HNSW32 is available on request: it
is fast to query but slow to build and cannot remove, so removals become tombstones until `compact()`.
Numbers behind the thresholds: bench/engine_search.py.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Literal

import faiss
import numpy as np

from .errors import DimensionMismatch, SearchIndexError

IndexType = Literal["Flat", "HNSW32", "IVF"]
RequestedType = Literal["auto", "Flat", "HNSW32", "IVF"]
INDEX_TYPES: tuple[str, ...] = ("Flat", "HNSW32", "IVF")

# "auto" uses exact search up to here: at 50k x 512 a batch-1 Flat query costs ~4 ms on one core
# (8 ms at 100k, bench), under the price of one feature extraction, and Flat has no training or rebuild to manage.
FLAT_MAX_VECTORS = 50_000
# A filtered HNSW search scores up to this many allowed vectors exactly (about 20 ms for 512-d on one core).
FILTER_EXACT_MAX_VECTORS = 20_000
# Faiss warns below 39 training points per list; fewer gives centroids worth little.
IVF_MIN_POINTS_PER_LIST = 39
# Cap on k-means training points per list (faiss default 256): 64 keeps a 1M-vector IVF build near 2 minutes on 2 cores.
IVF_TRAIN_POINTS_PER_LIST = 64
IVF_MAX_NLIST = 65_536

FORMAT_VERSION = 1
_MAGIC = b"SHITUVX\x00"
_HEADER_LEN = struct.Struct("<I")


def default_ivf_nlist(n_vectors: int) -> int:
    """IVF list count for n vectors: 4*sqrt(n) (faiss guidance), at most n/39 so every list trains, capped at 65536.

    PaddleClas build_gallery uses n/8 (capped at 65536); at 100k that is 12,500 lists with 8 training points each:
    5-6x slower to build and ~3x slower per query than 1,265 lists at the same recall (bench), and at 1M its
    65,536-centroid k-means would take hours on 2 cores, so we do not follow it.
    """
    if n_vectors <= 0:
        return 0
    return int(max(1, min(IVF_MAX_NLIST, round(4 * math.sqrt(n_vectors)), n_vectors // IVF_MIN_POINTS_PER_LIST)))


class VectorIndex:
    """A Faiss inner-product index keyed by int64 ids: build, add (re-adding an id replaces it), remove, search, to/from bytes.

    Not safe for concurrent mutation; concurrent searches on an unchanging index are fine.
    """

    def __init__(
        self,
        dim: int = 512,
        index_type: RequestedType = "auto",
        *,
        hnsw_ef_search: int = 128,
        hnsw_ef_construction: int = 40,
        ivf_nprobe: int = 32,
        ivf_nlist: int | None = None,
        threads: int = 1,
        compaction_ratio: float = 0.2,
    ) -> None:
        if index_type not in ("auto", *INDEX_TYPES):
            raise SearchIndexError(f"unknown index type {index_type!r}; use auto, Flat, HNSW32 or IVF")
        if dim < 1:
            raise DimensionMismatch(f"dimension must be positive, got {dim}")
        if threads < 1:
            raise SearchIndexError(f"threads must be at least 1, got {threads}")
        self._dim = int(dim)
        self._requested: str = index_type
        self.hnsw_ef_search = int(hnsw_ef_search)
        self.hnsw_ef_construction = int(hnsw_ef_construction)
        self.ivf_nprobe = int(ivf_nprobe)
        self.ivf_nlist = None if ivf_nlist is None else int(ivf_nlist)
        self.threads = int(threads)
        self.compaction_ratio = float(compaction_ratio)
        self._type: str | None = None  # what is actually built; None until the first build/add
        self._index: Any = None
        self._built_size = 0
        # HNSW only: faiss position -> external id, and dead positions (HNSW cannot remove).
        self._labels = np.zeros(0, dtype=np.int64)
        self._tombstones: set[int] = set()

    # --- properties -------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def requested_type(self) -> str:
        return self._requested

    @property
    def index_type(self) -> str:
        """The structure actually in use (auto and too-small IVF resolve to a concrete type at build)."""
        return self._type or self._resolve_type(0)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    @property
    def needs_compaction(self) -> bool:
        """True when HNSW tombstones pass `compaction_ratio`, or the size has drifted so far that a rebuild would pick another type or IVF list count."""
        if self._index is None:
            return False
        stored = int(self._index.ntotal)
        if stored and len(self._tombstones) > self.compaction_ratio * stored:
            return True
        live = len(self)
        if self._resolve_type(live) != self._type:
            return True
        return self._type == "IVF" and live > 4 * max(self._built_size, 1)

    def params(self) -> dict[str, Any]:
        return {
            "hnsw_ef_search": self.hnsw_ef_search,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "ivf_nprobe": self.ivf_nprobe,
            "ivf_nlist": self.ivf_nlist,
            "threads": self.threads,
            "compaction_ratio": self.compaction_ratio,
        }

    def __len__(self) -> int:
        if self._index is None:
            return 0
        return int(self._index.ntotal) - len(self._tombstones)

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, type={self.index_type}, requested={self._requested}, live={len(self)}, tombstones={self.tombstones})"

    # --- building -----------------------------------------------------------------------

    def _nlist_for(self, n_vectors: int) -> int:
        return self.ivf_nlist if self.ivf_nlist is not None else default_ivf_nlist(n_vectors)

    def _ivf_trainable(self, n_vectors: int) -> bool:
        nlist = self._nlist_for(n_vectors)
        # With nprobe >= nlist every list is scanned anyway: Flat gives the same answer exactly and needs no training.
        # k-means needs at least one point per list (the default rule already keeps >= 39).
        return nlist > self.ivf_nprobe and n_vectors >= nlist

    def _resolve_type(self, n_vectors: int) -> str:
        wanted = self._requested
        if wanted == "auto":
            wanted = "Flat" if n_vectors < FLAT_MAX_VECTORS else "IVF"
        if wanted == "IVF" and not self._ivf_trainable(n_vectors):
            return "Flat"
        return wanted

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content, choosing (for auto) and training the structure for this many vectors."""
        id_arr = _check_ids(ids)
        vec_arr = self._check_vectors(vectors, "vectors")
        if len(id_arr) != len(vec_arr):
            raise SearchIndexError(f"got {len(id_arr)} ids for {len(vec_arr)} vectors")
        kind = self._resolve_type(len(vec_arr))
        self._set_threads()
        if kind == "Flat":
            index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        elif kind == "IVF":
            nlist = self._nlist_for(len(vec_arr))
            index = faiss.index_factory(self._dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
            index.train(vec_arr)
        else:
            index = faiss.index_factory(self._dim, "HNSW32", faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.hnsw_ef_construction
        self._index, self._type, self._built_size = index, kind, len(vec_arr)
        self._labels = np.zeros(0, dtype=np.int64)
        self._tombstones = set()
        self._append(id_arr, vec_arr)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors; an id already present is replaced. An add to an empty index builds it (so auto picks the type)."""
        if self._index is None or len(self) == 0:
            self.build(ids, vectors)
            return
        id_arr = _check_ids(ids)
        vec_arr = self._check_vectors(vectors, "vectors")
        if len(id_arr) != len(vec_arr):
            raise SearchIndexError(f"got {len(id_arr)} ids for {len(vec_arr)} vectors")
        self.remove(id_arr)
        self._append(id_arr, vec_arr)

    def _append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self._set_threads()
        if self._type == "HNSW32":
            self._index.add(vectors)
            self._labels = np.concatenate([self._labels, ids])
        else:
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (unknown ids are ignored) and return how many were live; HNSW marks them as tombstones."""
        id_arr = _check_ids(ids, require_unique=False)
        if self._index is None or len(id_arr) == 0:
            return 0
        if self._type == "HNSW32":
            hit = np.flatnonzero(np.isin(self._labels, id_arr))
            fresh = [int(p) for p in hit if int(p) not in self._tombstones]
            self._tombstones.update(fresh)
            return len(fresh)
        # IVF removes with its own stored ids: IndexIDMap2 over IVF renumbers its id map but not the
        # lists' internal positions, so after a removal it returns wrong ids (checked on faiss 1.15).
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.unique(id_arr))))

    def compact(self) -> None:
        """Rebuild from the live vectors: drops HNSW tombstones and re-picks type / IVF lists for the current size."""
        live_ids, live_vectors = self.export()
        self.build(live_ids, live_vectors)

    # --- reading ------------------------------------------------------------------------

    def ids(self) -> np.ndarray:
        """Live ids, sorted."""
        return self.export(with_vectors=False)[0]

    def export(self, *, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids, vectors), sorted by id; vectors are empty when `with_vectors` is False."""
        empty = np.zeros((0, self._dim), dtype=np.float32)
        if self._index is None or self._index.ntotal == 0:
            return np.zeros(0, dtype=np.int64), empty
        if self._type == "Flat":
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, len(ids)) if with_vectors else empty
        elif self._type == "IVF":
            ids, vectors = self._export_ivf(with_vectors)
        else:
            alive = self._hnsw_alive()
            ids = self._labels[alive]
            if with_vectors:
                storage = faiss.downcast_index(self._index.storage)
                vectors = storage.reconstruct_n(0, int(self._index.ntotal))[alive]
            else:
                vectors = empty
        order = np.argsort(ids, kind="stable")
        return ids[order], (vectors[order] if with_vectors else empty)

    def _export_ivf(self, with_vectors: bool) -> tuple[np.ndarray, np.ndarray]:
        lists = self._index.invlists
        id_parts, vec_parts = [], []
        for list_no in range(self._index.nlist):
            size = lists.list_size(list_no)
            if size == 0:
                continue
            id_parts.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy())
            if with_vectors:
                codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * self._index.code_size)
                vec_parts.append(np.frombuffer(codes.tobytes(), dtype=np.float32).reshape(size, self._dim))
        ids = np.concatenate(id_parts).astype(np.int64)
        vectors = np.concatenate(vec_parts) if with_vectors else np.zeros((0, self._dim), dtype=np.float32)
        return ids, vectors

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product per query row: (scores (m,k) float32, ids (m,k) int64), padded with -inf / -1.

        ``allowed`` (ids) restricts the search to those vectors inside the index, not by dropping results after
        it: exact for Flat and IVF (every list is probed under a filter) and for HNSW up to
        FILTER_EXACT_MAX_VECTORS allowed vectors (scored one by one); a larger allowed set on HNSW is the
        graph's own filtered search, approximate like the unfiltered one.
        """
        query_arr = self._check_vectors(queries, "queries")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise SearchIndexError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        rows = len(query_arr)
        scores = np.full((rows, k), -np.inf, dtype=np.float32)
        ids = np.full((rows, k), -1, dtype=np.int64)
        allowed_arr = None if allowed is None else np.unique(_check_ids(allowed, require_unique=False))
        if rows == 0 or len(self) == 0 or (allowed_arr is not None and len(allowed_arr) == 0):
            return scores, ids
        self._set_threads()
        if self._type == "HNSW32":
            return self._search_hnsw(query_arr, k, scores, ids, allowed_arr)
        if self._type == "IVF":
            nprobe = self.ivf_nprobe if allowed_arr is None else int(self._index.nlist)
            params: Any = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = None if allowed_arr is None else faiss.SearchParameters()
        if allowed_arr is not None:
            selector = faiss.IDSelectorBatch(allowed_arr)
            params.sel = selector  # IVF lists store our ids; Flat's id map translates them for the selector
        found_scores, found_ids = self._index.search(query_arr, k, params=params)
        valid = found_ids >= 0
        scores[valid] = found_scores[valid]
        ids[valid] = found_ids[valid]
        return scores, ids

    def _search_hnsw(self, queries: np.ndarray, k: int, scores: np.ndarray, ids: np.ndarray,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        stored = int(self._index.ntotal)
        if allowed is not None:
            return self._search_hnsw_allowed(queries, k, scores, ids, allowed)
        # Over-fetch by the tombstone count so k live results survive the filter even if every dead vector ranks first.
        fetch = min(k + len(self._tombstones), stored)
        params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw_ef_search, fetch))
        found_scores, positions = self._index.search(queries, fetch, params=params)
        dead = np.zeros(stored, dtype=bool)
        if self._tombstones:
            dead[list(self._tombstones)] = True
        for row in range(len(queries)):
            keep = positions[row] >= 0
            keep[keep] &= ~dead[positions[row][keep]]
            live_positions = positions[row][keep][:k]
            ids[row, : len(live_positions)] = self._labels[live_positions]
            scores[row, : len(live_positions)] = found_scores[row][keep][:k]
        return scores, ids

    def _hnsw_alive(self) -> np.ndarray:
        """Per stored HNSW position: False where a removed vector's tombstone lies."""
        alive = np.ones(len(self._labels), dtype=bool)
        if self._tombstones:
            alive[list(self._tombstones)] = False
        return alive

    def _search_hnsw_allowed(self, queries: np.ndarray, k: int, scores: np.ndarray, ids: np.ndarray,
                             allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.flatnonzero(self._hnsw_alive() & np.isin(self._labels, allowed)).astype(np.int64)
        if len(positions) == 0:
            return scores, ids
        if len(positions) <= FILTER_EXACT_MAX_VECTORS:
            vectors = faiss.downcast_index(self._index.storage).reconstruct_batch(positions)
            similarity = queries @ vectors.T
            take = min(k, len(positions))
            order = np.argsort(-similarity, axis=1, kind="stable")[:, :take]
            scores[:, :take] = np.take_along_axis(similarity, order, axis=1)
            ids[:, :take] = self._labels[positions[order]]
            return scores, ids
        selector = faiss.IDSelectorBatch(positions)  # held here: params.sel does not keep it alive
        params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw_ef_search, k))
        params.sel = selector
        found_scores, found = self._index.search(queries, k, params=params)
        valid = found >= 0
        scores[valid] = found_scores[valid]
        ids[valid] = self._labels[found[valid]]
        return scores, ids

    # --- serialisation ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Magic, JSON header (format version, type, dim, params, tombstones, section sizes), faiss bytes, then HNSW labels; never pickle."""
        faiss_bytes = b"" if self._index is None else faiss.serialize_index(self._index).tobytes()
        label_bytes = self._labels.astype("<i8").tobytes() if self._type == "HNSW32" else b""
        header = {
            "format_version": FORMAT_VERSION,
            "type": self._type,
            "requested_type": self._requested,
            "dim": self._dim,
            "params": self.params(),
            "built_size": self._built_size,
            "tombstones": sorted(self._tombstones),
            "faiss_bytes": len(faiss_bytes),
            "label_bytes": len(label_bytes),
        }
        header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
        return b"".join([_MAGIC, _HEADER_LEN.pack(len(header_bytes)), header_bytes, faiss_bytes, label_bytes])

    @classmethod
    def from_bytes(cls, blob: bytes) -> "VectorIndex":
        """Inverse of `to_bytes`; validates every section. Only load blobs this platform wrote (faiss parsing is not hardened against hostile input)."""
        view = memoryview(blob)
        if bytes(view[: len(_MAGIC)]) != _MAGIC:
            raise SearchIndexError("not a serialised VectorIndex (bad magic bytes)")
        try:
            offset = len(_MAGIC)
            (header_len,) = _HEADER_LEN.unpack_from(view, offset)
            offset += _HEADER_LEN.size
            header = json.loads(bytes(view[offset : offset + header_len]).decode("utf-8"))
            offset += header_len
            version = header["format_version"]
            if version != FORMAT_VERSION:
                raise SearchIndexError(f"index format version {version} is not supported (expected {FORMAT_VERSION})")
            params = header["params"]
            restored = cls(header["dim"], header["requested_type"], **params)
            faiss_len, label_len = int(header["faiss_bytes"]), int(header["label_bytes"])
            if offset + faiss_len + label_len != len(view):
                raise SearchIndexError(
                    f"serialised index is {len(view)} bytes, header describes {offset + faiss_len + label_len}"
                )
            kind = header["type"]
            if kind is None:
                return restored
            if kind not in INDEX_TYPES:
                raise SearchIndexError(f"unknown index type {kind!r} in serialised index")
            index = faiss.deserialize_index(np.frombuffer(view[offset : offset + faiss_len], dtype=np.uint8))
            labels = np.frombuffer(view[offset + faiss_len :], dtype="<i8").astype(np.int64)
            tombstones = {int(t) for t in header["tombstones"]}
        except SearchIndexError:
            raise
        except (KeyError, TypeError, ValueError, struct.error, RuntimeError) as error:
            raise SearchIndexError(f"corrupt serialised index: {error}") from error
        _check_restored(index, kind, restored.dim, labels, tombstones)
        restored._index, restored._type = index, kind
        restored._built_size = int(header.get("built_size", index.ntotal))
        restored._labels = labels if kind == "HNSW32" else np.zeros(0, dtype=np.int64)
        restored._tombstones = tombstones
        return restored

    # --- validation ---------------------------------------------------------------------

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise DimensionMismatch(
                f"{what} must have shape (n, {self._dim}), got {arr.shape}",
                details={"expected": self._dim, "shape": list(arr.shape)},
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise SearchIndexError(f"{what} must be floating point, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise SearchIndexError(f"{what} row {bad} contains NaN or infinite values")
        return arr

    def _set_threads(self) -> None:
        # Importing paddle pins OMP_NUM_THREADS=1, which would silently cap faiss too.
        faiss.omp_set_num_threads(self.threads)


def _check_ids(ids: np.ndarray, *, require_unique: bool = True) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise SearchIndexError(f"ids must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise SearchIndexError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise SearchIndexError("ids must be non-negative (-1 marks 'no result')")
    if require_unique and len(np.unique(arr)) != len(arr):
        raise SearchIndexError("ids must be unique within one call")
    return arr


def _check_restored(index: Any, kind: str, dim: int, labels: np.ndarray, tombstones: set[int]) -> None:
    expected = {"Flat": faiss.IndexIDMap2, "IVF": faiss.IndexIVFFlat, "HNSW32": faiss.IndexHNSWFlat}[kind]
    if not isinstance(index, expected):
        raise SearchIndexError(f"serialised {kind} index holds a {type(index).__name__}")
    if index.d != dim:
        raise DimensionMismatch(f"serialised index has dimension {index.d}, header says {dim}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise SearchIndexError("serialised index does not use inner product")
    if kind == "HNSW32":
        if len(labels) != index.ntotal:
            raise SearchIndexError(f"serialised HNSW index has {index.ntotal} vectors but {len(labels)} labels")
        if any(t < 0 or t >= index.ntotal for t in tombstones):
            raise SearchIndexError("serialised tombstones point outside the index")
    elif tombstones or len(labels):
        raise SearchIndexError(f"serialised {kind} index carries HNSW-only sections")


__all__ = [
    "FLAT_MAX_VECTORS",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "IndexType",
    "RequestedType",
    "VectorIndex",
    "default_ivf_nlist",
]
