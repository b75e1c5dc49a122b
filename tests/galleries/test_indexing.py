"""Gallery search: pgvector (exact and per-gallery partial HNSW), the Faiss cache with its cold-start fallback,
and `shitu_index check|rebuild`. Real PostgreSQL + pgvector; embeddings are random unit vectors written directly."""
import itertools
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from galleries import pgvector_search
from galleries.indexing import gallery_index_cache, gallery_searcher, persisted_key, rebuild, search_gallery
from galleries.models import Embedding, Gallery, Product, ReferenceImage
from galleries.pgvector_search import (
    drop_pgvector_indexes,
    ensure_pgvector_index,
    fetch_vectors,
    knn_sql,
    pgvector_index_name,
    pgvector_indexes,
    prune_pgvector_indexes,
    search_pgvector,
)
from galleries.services import gallery_version_bump
from shitu_platform.object_store import object_store

MODEL = "test-extractor@1"
_serial = itertools.count()


def unit_vectors(rng, n):
    vectors = rng.standard_normal((n, 512)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_embeddings(gallery, vectors, *, model_key=MODEL, bump=True):
    """One reference image per vector, written straight to the tables (no files, no extractor)."""
    product, _ = Product.unscoped.get_or_create(tenant=gallery.tenant, gallery=gallery, label="item")
    serials = [next(_serial) for _ in range(len(vectors))]
    images = ReferenceImage.unscoped.bulk_create([
        ReferenceImage(tenant=gallery.tenant, gallery=gallery, product=product, object_key=f"k/{serial}",
                       checksum=f"c{serial}", size_bytes=1, status="ready")
        for serial in serials
    ])
    rows = Embedding.unscoped.bulk_create([
        Embedding(tenant=gallery.tenant, gallery=gallery, reference_image=image, model_key=model_key, vector=vector)
        for image, vector in zip(images, vectors)
    ])
    if bump:
        gallery_version_bump(gallery_id=gallery.pk)
    return np.array([row.pk for row in rows], dtype=np.int64)


def make_gallery(world, name, vectors, **options):
    gallery = Gallery.objects.create(tenant=world.tenant, name=name)
    ids = add_embeddings(gallery, vectors, **options)
    gallery.refresh_from_db()
    return gallery, ids


def exact_ranking(ids, vectors, queries, k):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture(autouse=True)
def fresh_cache():
    gallery_index_cache.forget()
    yield
    gallery_index_cache.wait_for_warming(timeout=30)
    gallery_index_cache.forget()


@pytest.mark.django_db
def test_pgvector_search_equals_numpy_exact_ranking(tenant_a):
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, 300)
    gallery, ids = make_gallery(tenant_a, "Shelf", vectors)
    queries = unit_vectors(rng, 6)
    scores, found = search_pgvector(gallery, MODEL, queries, 10)
    expected_scores, expected_ids = exact_ranking(ids, vectors, queries, 10)
    assert (found == expected_ids).all()
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    padded_scores, padded = search_pgvector(gallery, MODEL, queries[:1], 400)
    assert (padded[0, :300] >= 0).all() and (padded[0, 300:] == -1).all() and np.isneginf(padded_scores[0, 300:]).all()


@pytest.mark.django_db
def test_fetch_vectors_reads_back_what_was_stored_in_batches(tenant_a):
    rng = np.random.default_rng(2)
    vectors = unit_vectors(rng, 45)
    gallery, ids = make_gallery(tenant_a, "Shelf", vectors)
    got_ids, got_vectors = fetch_vectors(gallery, MODEL, batch_rows=7)
    assert (got_ids == ids).all() and np.array_equal(got_vectors, vectors)
    some = ids[[3, 17, 40]]
    got_ids, got_vectors = fetch_vectors(gallery, MODEL, some, batch_rows=2)
    assert (got_ids == some).all() and np.array_equal(got_vectors, vectors[[3, 17, 40]])


@pytest.mark.django_db
def test_tenant_b_vectors_never_come_back_for_a_gallery(tenant_a, tenant_b):
    rng = np.random.default_rng(3)
    queries = unit_vectors(rng, 4)
    gallery_a, ids_a = make_gallery(tenant_a, "Shelf", unit_vectors(rng, 50))
    # B holds the queries themselves (perfect matches), under the same model key; A's other gallery and model too.
    _, ids_b = make_gallery(tenant_b, "Shelf", queries)
    _, ids_a2 = make_gallery(tenant_a, "Other shelf", queries)
    add_embeddings(gallery_a, queries, model_key="another-model@1")
    for exact in (True, False):
        _, found = search_pgvector(gallery_a, MODEL, queries, 60, exact=exact)
        assert set(found[found >= 0].tolist()) <= set(ids_a.tolist())
    result = search_gallery(gallery_a, MODEL, queries, 60)
    assert set(result.ids[result.ids >= 0].tolist()) <= set(ids_a.tolist())
    assert gallery_index_cache.get(gallery_a, MODEL).index.ids().tolist() == sorted(ids_a.tolist())
    assert not set(ids_b.tolist()) & set(gallery_index_cache.get(gallery_a, MODEL).index.ids().tolist())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_partial_hnsw_index_is_built_per_gallery_and_used_by_the_planner(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr(pgvector_search, "PGVECTOR_INDEX_MIN_VECTORS", 1000)
    rng = np.random.default_rng(4)
    vectors = unit_vectors(rng, 1500)
    hostile_key = "evil'); DROP TABLE galleries_embedding; --@1"  # quoted as a literal, never executed
    gallery, ids = make_gallery(tenant_a, "Big", vectors, model_key=hostile_key)
    small, _ = make_gallery(tenant_b, "Small", unit_vectors(rng, 50), model_key=hostile_key)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE galleries_embedding")

    name = ensure_pgvector_index(gallery, hostile_key)
    assert name == pgvector_index_name(gallery.pk, hostile_key)
    assert ensure_pgvector_index(small, hostile_key) is None  # below the threshold: exact scans
    assert [(i.name, i.valid) for i in pgvector_indexes()] == [(name, True)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        definition = cursor.fetchone()[0]
        assert "USING hnsw (vector vector_ip_ops)" in definition
        assert f"gallery_id = {gallery.pk}" in definition and "'evil''); DROP TABLE" in definition
        cursor.execute("EXPLAIN " + knn_sql(gallery, hostile_key, vectors[0], 5))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {name}" in plan, plan

    queries = vectors[:20] + 0.01 * unit_vectors(rng, 20)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, approximate = search_pgvector(gallery, hostile_key, queries, 5)
    _, exact = search_pgvector(gallery, hostile_key, queries, 5, exact=True)
    assert (approximate[:, 0] == ids[:20]).mean() >= 0.9 and (exact[:, 0] == ids[:20]).all()
    assert ensure_pgvector_index(gallery, hostile_key) == name  # already there: nothing rebuilt

    assert drop_pgvector_indexes(gallery, "another-model@1") == []
    assert drop_pgvector_indexes(gallery.pk, hostile_key) == [name]
    assert pgvector_indexes() == [] and Embedding.unscoped.filter(gallery=gallery).count() == 1500
    assert ensure_pgvector_index(gallery, hostile_key) == name
    Gallery.unscoped.filter(pk=gallery.pk).delete()  # its index stays behind (empty) until pruned
    assert prune_pgvector_indexes() == [name] and pgvector_indexes() == []


@pytest.mark.django_db(transaction=True)
def test_cold_cache_answers_from_pgvector_then_faiss_gives_the_same_answer(tenant_a):
    rng = np.random.default_rng(5)
    gallery, _ = make_gallery(tenant_a, "Shelf", unit_vectors(rng, 400))
    queries = unit_vectors(rng, 5)
    cold = search_gallery(gallery, MODEL, queries, 8)
    assert cold.source == "pgvector" and cold.version == gallery.index_version
    assert gallery_index_cache.wait_for_warming(timeout=30)
    warm = search_gallery(gallery, MODEL, queries, 8)
    assert warm.source == "faiss"
    assert (warm.ids == cold.ids).all()
    np.testing.assert_allclose(warm.scores, cold.scores, atol=1e-5)
    # The first warm-up had nothing persisted to load, so it saved its build for the next cold worker.
    gallery_index_cache.forget()
    entry = gallery_index_cache.get(gallery, MODEL)
    assert entry.version == gallery.index_version and len(entry.index) == 400


@pytest.mark.django_db
def test_a_search_never_waits_for_a_refresh_in_progress(tenant_a):
    rng = np.random.default_rng(6)
    gallery, ids = make_gallery(tenant_a, "Shelf", unit_vectors(rng, 30))
    entry = gallery_index_cache.get(gallery, MODEL)
    query = unit_vectors(rng, 1)
    assert search_gallery(gallery, MODEL, query, 3).source == "faiss"
    with entry.gate.writing():
        during = search_gallery(gallery, MODEL, query, 3)
    assert during.source == "pgvector" and set(during.ids[0]) <= set(ids.tolist())
    object_store().put(persisted_key(gallery, MODEL), b"\0\0\0\0\0\0\0\2{}garbage")  # an unreadable cache is rebuilt
    gallery_index_cache.forget()
    assert len(gallery_index_cache.get(gallery, MODEL).index) == 30
    searcher = gallery_searcher(gallery, MODEL)  # what the recognition pipeline is handed
    scores, found = searcher.search(query, 3)
    assert searcher.last.source == "faiss" and searcher.version == gallery.index_version and found.shape == (1, 3)


def check_row(out, gallery):
    """pgvector, cache, missing, extra, top1, recall@k, hnsw of the gallery's row in `shitu_index check` output."""
    [row] = [line.split() for line in out.splitlines() if line.split()[:2] == [str(gallery.pk), str(gallery.tenant_id)]]
    return row[4:]


@pytest.mark.slow
@pytest.mark.django_db
def test_check_reports_drift_behind_the_caches_back_and_rebuild_fixes_it(tenant_a, capsys):
    rng = np.random.default_rng(7)
    gallery, _ = make_gallery(tenant_a, "Shelf", unit_vectors(rng, 120))
    rebuild(gallery, MODEL)
    gallery_index_cache.forget()  # the command sees what a fresh worker would load
    call_command("shitu_index", "check", "--gallery", str(gallery.pk))
    out = capsys.readouterr().out
    assert "no drift" in out and check_row(out, gallery) == ["120", "120", "0", "0", "1.000", "1.000", "-"]

    add_embeddings(gallery, unit_vectors(rng, 1), bump=False)  # written without bumping the version
    gallery_index_cache.forget()
    with pytest.raises(CommandError) as failure:
        call_command("shitu_index", "check", "--gallery", str(gallery.pk))
    assert failure.value.returncode == 1 and "1 missing, 0 extra" in str(failure.value)
    assert check_row(capsys.readouterr().out, gallery)[:4] == ["121", "120", "1", "0"]

    call_command("shitu_index", "rebuild", "--gallery", str(gallery.pk))
    gallery_index_cache.forget()
    call_command("shitu_index", "check", "--all")
    assert "no drift" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--gallery"):
        call_command("shitu_index", "check")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_new_embedding_is_found_within_5s_of_its_bump_and_a_deleted_one_never_again(tenant_a):
    rng = np.random.default_rng(8)
    gallery, _ = make_gallery(tenant_a, "Shelf", unit_vectors(rng, 200))
    query = unit_vectors(rng, 1)
    search_gallery(gallery, MODEL, query, 1)
    assert gallery_index_cache.wait_for_warming(timeout=30)
    assert search_gallery(gallery, MODEL, query, 1).source == "faiss"

    [new_id] = add_embeddings(gallery, query)  # bumps the version
    bumped = time.monotonic()
    while search_gallery(gallery, MODEL, query, 1).ids[0, 0] != new_id:
        assert time.monotonic() - bumped < 5, "new embedding not found within 5 s"
        time.sleep(0.05)
    assert gallery_index_cache.wait_for_warming(timeout=30)
    warm = search_gallery(gallery, MODEL, query, 1)
    assert warm.source == "faiss" and warm.ids[0, 0] == new_id

    ReferenceImage.unscoped.filter(embeddings__pk=new_id).delete()
    gallery_version_bump(gallery_id=gallery.pk)
    seen = set()
    for _ in range(20):  # right after the delete (pgvector), during and after the warm-up (Faiss)
        result = search_gallery(gallery, MODEL, query, 5)
        seen.add(result.source)
        assert new_id not in result.ids
        time.sleep(0.02)
    assert gallery_index_cache.wait_for_warming(timeout=30)
    final = search_gallery(gallery, MODEL, query, 5)
    assert final.source == "faiss" and new_id not in final.ids and "pgvector" in seen
