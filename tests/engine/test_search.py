"""VectorIndex: exactness of Flat, recall of HNSW/IVF, id bookkeeping, serialisation and input validation."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from recognition.engine import search as search_module
from recognition.engine.errors import DimensionMismatch, SearchIndexError
from recognition.engine.search import VectorIndex, default_ivf_nlist

# HNSW32 takes seconds to build on 5,000 vectors: `-m "not slow"` leaves it to the whole suite.
HNSW = pytest.param("HNSW32", marks=pytest.mark.slow)
ALL_TYPES = ["Flat", HNSW, "IVF"]


def _unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _built(kind: str, ids: np.ndarray, vectors: np.ndarray, **options) -> VectorIndex:
    index = VectorIndex(vectors.shape[1], kind, **options)
    index.build(ids, vectors)
    assert index.index_type == kind  # 5k vectors are enough for a real IVF, not a Flat fallback
    return index


def test_flat_is_exact_against_numpy(rng) -> None:
    vectors, queries = _unit(300, 64, rng), _unit(20, 64, rng)
    ids = rng.permutation(10_000)[:300].astype(np.int64)
    index = VectorIndex(64, "Flat")
    index.build(ids, vectors)
    scores, found = index.search(queries, 10)
    brute = queries @ vectors.T
    order = np.argsort(-brute, axis=1)[:, :10]
    assert np.array_equal(found, ids[order])
    assert np.allclose(scores, np.take_along_axis(brute, order, axis=1), atol=1e-5)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and found.shape == (20, 10)


@pytest.mark.parametrize("kind", [HNSW, "IVF"])
def test_approximate_recall_at_1_vs_flat(clustered_5k, kind: str) -> None:
    ids, vectors, queries = clustered_5k
    truth = _built("Flat", ids, vectors).search(queries, 1)[1][:, 0]
    found = _built(kind, ids, vectors).search(queries, 1)[1][:, 0]
    assert (found == truth).mean() >= 0.95


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_add_remove_and_readd(clustered_5k, rng, kind: str) -> None:
    ids, vectors, _ = clustered_5k
    index = _built(kind, ids[:4000], vectors[:4000])
    start = len(index)
    index.add(ids[-100:] + 1, vectors[-100:])  # fresh ids
    assert len(index) == start + 100
    assert index.search(vectors[-1:], 1)[1][0, 0] == ids[-1] + 1

    gone = ids[:50]
    assert index.remove(gone) == 50
    assert index.remove(gone) == 0  # already removed, unknown ids are ignored
    assert len(index) == start + 50
    assert not np.isin(gone, index.ids()).any()
    found = index.search(vectors[:50], 10)[1]
    assert not np.isin(found, gone).any()

    # Re-adding a removed id, and re-adding a live id with a new vector (replace), both keep one entry per id.
    replacement = _unit(2, 512, rng)
    index.add(np.array([gone[0], ids[60]]), replacement)
    assert len(index) == start + 51
    live = index.ids()
    assert len(live) == len(np.unique(live)) == len(index)
    scores, found = index.search(replacement, 3)
    assert found[:, 0].tolist() == [gone[0], ids[60]]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    assert ids[60] not in index.search(vectors[60:61], 5)[1][0]  # the old vector of id 60 is gone


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_removed_ids_never_returned_even_when_most_are_removed(clustered_5k, kind: str) -> None:
    ids, vectors, queries = clustered_5k
    index = _built(kind, ids, vectors)
    removed = ids[::2]
    index.remove(removed)
    scores, found = index.search(queries, 20)
    assert not np.isin(found, removed).any()
    assert (found >= 0).all()  # enough live vectors remain for every query's 20 results
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_bytes_round_trip_gives_identical_results(clustered_5k, kind: str) -> None:
    ids, vectors, queries = clustered_5k
    index = _built(kind, ids, vectors, ivf_nprobe=16, hnsw_ef_search=64)
    index.remove(ids[:300])
    blob = index.to_bytes()
    assert b"pickle" not in blob[:200] and blob.startswith(b"SHITUVX")
    restored = VectorIndex.from_bytes(blob)
    assert restored.index_type == kind and restored.params() == index.params()
    assert len(restored) == len(index) and restored.tombstones == index.tombstones
    assert np.array_equal(restored.ids(), index.ids())
    for left, right in zip(index.search(queries, 5), restored.search(queries, 5)):
        assert np.array_equal(left, right)
    assert restored.to_bytes() == blob


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_export_returns_the_stored_vectors(clustered_5k, kind: str) -> None:
    ids, vectors, _ = clustered_5k
    index = _built(kind, ids, vectors)
    index.remove(ids[:10])
    out_ids, out_vectors = index.export()
    assert np.array_equal(out_ids, np.sort(ids[10:]))
    position = {int(item): row for row, item in enumerate(ids)}
    assert np.array_equal(out_vectors, vectors[[position[int(item)] for item in out_ids]])


def test_padding_when_fewer_results_than_k(rng) -> None:
    empty = VectorIndex(16)
    scores, found = empty.search(_unit(2, 16, rng), 3)
    assert (found == -1).all() and np.isneginf(scores).all()
    small = VectorIndex(16, "Flat")
    small.build(np.array([5, 6, 7]), _unit(3, 16, rng))
    scores, found = small.search(_unit(1, 16, rng), 5)
    assert sorted(found[0, :3].tolist()) == [5, 6, 7]
    assert found[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()


def test_hnsw_tombstones_padding_and_compaction(rng) -> None:
    vectors = _unit(200, 32, rng)
    index = VectorIndex(32, "HNSW32", compaction_ratio=0.2)
    index.build(np.arange(200), vectors)
    index.remove(np.arange(197))
    assert index.tombstones == 197 and len(index) == 3 and index.needs_compaction
    scores, found = index.search(vectors[:1], 5)
    assert sorted(found[0, :3].tolist()) == [197, 198, 199] and found[0, 3:].tolist() == [-1, -1]
    index.compact()
    assert index.tombstones == 0 and len(index) == 3 and not index.needs_compaction
    assert index.search(vectors[198:199], 1)[1][0, 0] == 198


def test_auto_type_by_size(monkeypatch, clustered_5k) -> None:
    ids, vectors, _ = clustered_5k
    auto = VectorIndex(512)
    auto.build(ids, vectors)
    assert auto.index_type == "Flat"  # 5k is far below FLAT_MAX_VECTORS
    monkeypatch.setattr(search_module, "FLAT_MAX_VECTORS", 4000)
    assert auto.needs_compaction  # a rebuild would now choose IVF
    auto.compact()
    assert auto.index_type == "IVF" and not auto.needs_compaction
    # IVF asked for with too few vectors to train falls back to exact Flat.
    tiny = VectorIndex(512, "IVF")
    tiny.build(ids[:500], vectors[:500])
    assert tiny.index_type == "Flat" and tiny.requested_type == "IVF"
    assert default_ivf_nlist(100_000) == 1265 and default_ivf_nlist(1000) == 25
    assert default_ivf_nlist(10**9) == 65_536


def test_first_add_builds_and_threads_are_applied(rng) -> None:
    index = VectorIndex(16, threads=2)
    index.add(np.array([1, 2]), _unit(2, 16, rng))
    assert len(index) == 2 and index.index_type == "Flat"
    index.search(_unit(1, 16, rng), 1)
    assert faiss.omp_get_max_threads() == 2


def test_bad_inputs_raise_typed_errors(rng) -> None:
    index = VectorIndex(16, "Flat")
    with pytest.raises(DimensionMismatch) as caught:
        index.build(np.arange(3), _unit(3, 8, rng))
    assert caught.value.code == "dimension_mismatch"
    index.build(np.arange(3), _unit(3, 16, rng))
    with pytest.raises(DimensionMismatch):
        index.search(_unit(1, 32, rng), 1)
    with pytest.raises(DimensionMismatch):
        index.search(_unit(1, 16, rng)[0], 1)  # 1-D query
    nan_query = _unit(2, 16, rng)
    nan_query[1, 3] = np.nan
    with pytest.raises(SearchIndexError, match="row 1"):
        index.search(nan_query, 1)
    with pytest.raises(SearchIndexError, match="floating point"):
        index.add(np.array([9]), np.ones((1, 16), dtype=np.int32))
    with pytest.raises(SearchIndexError, match="unique"):
        index.add(np.array([4, 4]), _unit(2, 16, rng))
    with pytest.raises(SearchIndexError, match="non-negative"):
        index.add(np.array([-1]), _unit(1, 16, rng))
    with pytest.raises(SearchIndexError, match="2 ids for 3 vectors"):
        index.add(np.array([4, 5]), _unit(3, 16, rng))
    with pytest.raises(SearchIndexError, match="k must be"):
        index.search(_unit(1, 16, rng), 0)
    with pytest.raises(SearchIndexError, match="unknown index type"):
        VectorIndex(16, "LSH")  # type: ignore[arg-type]
    assert len(index) == 3  # failed calls changed nothing


def test_from_bytes_rejects_corrupt_blobs(rng) -> None:
    index = VectorIndex(16, "Flat")
    index.build(np.arange(4), _unit(4, 16, rng))
    blob = index.to_bytes()
    with pytest.raises(SearchIndexError, match="magic"):
        VectorIndex.from_bytes(b"\x80\x04\x95" + blob[3:])  # e.g. a pickle
    with pytest.raises(SearchIndexError):
        VectorIndex.from_bytes(blob[:-10])
    with pytest.raises(SearchIndexError, match="version"):
        VectorIndex.from_bytes(blob.replace(b'"format_version":1', b'"format_version":9'))
    assert len(VectorIndex.from_bytes(VectorIndex(16).to_bytes())) == 0
