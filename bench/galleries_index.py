"""Gallery search on the embedded stack: Faiss cache vs pgvector (exact scan, per-gallery partial HNSW), cache memory,
cold load vs rebuild, and ingest rate. Not a test.

    nice -n 5 .venv/bin/python bench/galleries_index.py [--sizes 10000,100000] [--queries 100] [--exact-queries 40]

Starts its own PostgreSQL + pgvector (fresh temp dir, free port), migrates, and writes one gallery per size with
binary COPY. Data: clustered synthetic unit vectors (bench/engine_search.py); queries are near-duplicates of stored
vectors (a new photo of a known product); recall@1 counts agreement with pgvector's exact top-1. Latencies are one
query at a time, k=5. The ingest rate runs `reference_images_embed_with` on generated photos with the default
extractor (SHITU_MODELS_ROOT, else this checkout's var/models, else the colour-histogram baseline).
About 6-10 minutes on 2 cores, most of it the 100k HNSW build.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.engine_search import clustered_vectors, near_duplicates  # noqa: E402
from shitu_platform.embedded import EmbeddedPostgres, PostgresSettings, free_port  # noqa: E402

MODEL = "bench-extractor@1"
K = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def latencies(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Milliseconds per single-query call, and the top-1 id of each."""
    times, top1 = [], []
    for query in queries:
        started = time.perf_counter()
        ids = search(query[None, :])
        times.append((time.perf_counter() - started) * 1000)
        top1.append(int(ids[0, 0]))
    return times, np.array(top1)


def start_stack(scratch: Path) -> EmbeddedPostgres:
    os.environ.pop("DATABASE_URL", None)
    os.environ["SHITU_VAR_DIR"] = str(scratch / "var")
    os.environ["SHITU_EMBEDDED_PG_PORT"] = str(free_port())
    os.environ.setdefault("SHITU_MODELS_ROOT", str(REPO / "var" / "models"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "shitu_platform.settings"
    server = EmbeddedPostgres(PostgresSettings(data_dir=scratch / "postgres", port=int(os.environ["SHITU_EMBEDDED_PG_PORT"])))
    server.start()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from shitu_platform.object_store import object_store

    object_store().ensure_ready()
    return server


def column_types(cursor, table: str, columns: list[str]) -> list[str]:
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
        [table],
    )
    types = dict(cursor.fetchall())
    return [types[column].split("(")[0] if not types[column].startswith("vector") else "vector" for column in columns]


def copy_gallery(url: str, gallery, product, vectors: np.ndarray) -> tuple[float, np.ndarray]:
    """Reference image rows (text COPY), then embeddings (binary COPY, timed); returns (seconds, embedding ids)."""
    import psycopg
    from pgvector.psycopg import register_vector

    now = datetime.now(timezone.utc)
    tables = "galleries_referenceimage, galleries_embedding"
    with psycopg.connect(url) as conn:
        register_vector(conn)
        with conn.cursor() as cursor:
            # PostgreSQL refuses COPY FROM where row-level security applies, and FORCE applies it to this owner: lift
            # FORCE for this bulk load on the bench's scratch database, and put it back at the end.
            for table in tables.split(", "):
                cursor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            with cursor.copy("COPY galleries_referenceimage (tenant_id, gallery_id, product_id, object_key, checksum, "
                             "size_bytes, status, failure_reason, local_features_key, created_at) FROM STDIN") as copy:
                for number in range(len(vectors)):
                    copy.write_row((gallery.tenant_id, gallery.pk, product.pk, f"bench/{gallery.pk}/{number}",
                                    f"{gallery.pk}-{number}", 1, "ready", "", "", now))
            cursor.execute("SELECT id FROM galleries_referenceimage WHERE gallery_id = %s ORDER BY id", [gallery.pk])
            image_ids = [row[0] for row in cursor.fetchall()]
            columns = ["tenant_id", "gallery_id", "reference_image_id", "model_key", "vector", "created_at"]
            types = column_types(cursor, "galleries_embedding", columns)
            started = time.perf_counter()
            with cursor.copy(f"COPY galleries_embedding ({', '.join(columns)}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for image_id, vector in zip(image_ids, vectors):
                    copy.write_row((gallery.tenant_id, gallery.pk, image_id, MODEL, vector, now))
            conn.commit()
            seconds = time.perf_counter() - started
            cursor.execute("ANALYZE galleries_embedding")
            cursor.execute("SELECT id FROM galleries_embedding WHERE gallery_id = %s ORDER BY reference_image_id", [gallery.pk])
            embedding_ids = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
            for table in tables.split(", "):
                cursor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        conn.commit()
    return seconds, embedding_ids


_RSS_PROBE = """
import gc, sys, psutil
sys.path.insert(0, sys.argv[2])
from recognition.engine.search import VectorIndex
blob = open(sys.argv[1], "rb").read()
gc.collect(); before = psutil.Process().memory_info().rss
index = VectorIndex.from_bytes(blob)
gc.collect(); print(psutil.Process().memory_info().rss - before)
"""


def loaded_rss_delta(blob: bytes) -> int:
    """RSS growth of a fresh process loading the cache from its bytes: what a worker holds (no build temporaries,
    no allocator reuse from earlier work in this process)."""
    with tempfile.NamedTemporaryFile(suffix=".faiss") as handle:
        handle.write(blob)
        handle.flush()
        probe = subprocess.run([sys.executable, "-c", _RSS_PROBE, handle.name, str(REPO)], capture_output=True, text=True, check=True)
    return int(probe.stdout.strip().splitlines()[-1])


def run_size(url: str, tenant, size: int, n_queries: int, n_exact: int, rng: np.random.Generator) -> dict:
    from django.conf import settings
    from django.db import connection

    from galleries.indexing import gallery_index_cache, load_persisted, rebuild, search_gallery
    from galleries.models import Gallery, Product
    from galleries.pgvector_search import ensure_pgvector_index, fetch_vectors, search_pgvector
    from galleries.services import gallery_version_bump
    from recognition.engine.search import VectorIndex

    out: dict = {"size": size}
    gallery = Gallery.objects.create(tenant=tenant, name=f"bench {size}")
    product = Product.objects.create(tenant=tenant, gallery=gallery, label="bulk")
    vectors, _ = clustered_vectors(size, rng)
    out["copy_s"], ids = copy_gallery(url, gallery, product, vectors)
    gallery_version_bump(gallery_id=gallery.pk)
    gallery.refresh_from_db()
    queries = near_duplicates(vectors, n_queries, rng)
    del vectors

    out["fetch_s"], (fetched_ids, fetched) = timed(lambda: fetch_vectors(gallery, MODEL))
    out["build_s"], fresh = timed(lambda: _built(VectorIndex(512, settings.SHITU_INDEX_TYPE, threads=settings.ENGINE_THREADS),
                                                 fetched_ids, fetched))
    blob = fresh.to_bytes()
    out["bytes"], out["faiss_type"] = len(blob), fresh.index_type
    out["rss_delta"] = loaded_rss_delta(blob)
    del blob
    flat = _built(VectorIndex(512, "Flat", threads=settings.ENGINE_THREADS), fetched_ids, fetched) if fresh.index_type != "Flat" else None
    del fresh, fetched
    out["rebuild_s"], entry = timed(lambda: rebuild(gallery, MODEL))
    out["load_s"] = statistics.median(timed(lambda: load_persisted(gallery, MODEL))[0] for _ in range(3))

    exact_queries = queries[:n_exact]
    exact_ms, exact_top1 = latencies(lambda q: search_pgvector(gallery, MODEL, q, K, exact=True)[1], exact_queries)

    def recall(top1: np.ndarray) -> float:
        return float((top1[:n_exact] == exact_top1).mean())

    rows = {}
    ms, top1 = latencies(lambda q: search_gallery(gallery, MODEL, q, K).ids, queries)
    rows["Faiss cache, search_gallery (warm)"] = (ms, recall(top1))
    ms, top1 = latencies(lambda q: entry.index.search(q, K)[1], queries)
    rows["  of which VectorIndex.search"] = (ms, recall(top1))
    if flat is not None:
        ms, top1 = latencies(lambda q: flat.search(q, K)[1], queries)
        rows["  Faiss Flat (exact), for reference"] = (ms, recall(top1))
    rows["pgvector exact scan"] = (exact_ms, 1.0)
    out["hnsw_build_s"], name = timed(lambda: ensure_pgvector_index(gallery, MODEL))
    out["hnsw_name"] = name
    ms, top1 = latencies(lambda q: search_pgvector(gallery, MODEL, q, K)[1], queries)
    rows["pgvector HNSW partial index"] = (ms, recall(top1))
    cold = []
    for query in queries[:5]:
        gallery_index_cache.forget()
        started = time.perf_counter()
        answer = search_gallery(gallery, MODEL, query[None, :], K)
        cold.append((time.perf_counter() - started) * 1000)
        assert answer.source == "pgvector"
        gallery_index_cache.wait_for_warming()
    rows["first request on a cold worker (pgvector)"] = (cold, float("nan"))
    out["rows"] = rows
    out["hnsw_bytes"] = 0
    if name:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
            out["hnsw_bytes"] = cursor.fetchone()[0]
    gallery_index_cache.forget()
    return out


def _built(index, ids, vectors):
    index.build(ids, vectors)
    return index


def ingest_rate(tenant, n_images: int) -> tuple[str, float, int]:
    """Images embedded per second by one process: `reference_images_embed_with` in import-sized batches."""
    from django.conf import settings

    from galleries.models import Gallery, Product, ReferenceImage
    from galleries.services import reference_image_object_key, reference_images_embed_with
    from modelhub.registry import active_detector, extractor_for
    from shitu_platform.object_store import object_store
    from tests.support.images import product_photo

    gallery = Gallery.objects.create(tenant=tenant, name="bench ingest")
    product = Product.objects.create(tenant=tenant, gallery=gallery, label="photos")
    rng = np.random.default_rng(0)
    images = []
    for number in range(n_images):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        data = product_photo(colour, size=(480, 640))
        key = reference_image_object_key(gallery=gallery, checksum=f"bench{number:04d}")
        object_store().put(key, data, content_type="image/jpeg")
        images.append(ReferenceImage.objects.create(
            tenant=tenant, gallery=gallery, product=product, object_key=key, checksum=f"bench{number:04d}",
            size_bytes=len(data), width=480, height=640,
        ))
    extractor, detector = extractor_for(tenant=None), active_detector()  # loaded and warmed before the clock starts
    batch = settings.SHITU_IMPORT_BATCH_SIZE
    started = time.perf_counter()
    for start in range(0, n_images, batch):
        done, failed = reference_images_embed_with(images=images[start: start + batch], extractor=extractor)
        assert failed == 0
    seconds = time.perf_counter() - started
    label = extractor.key + ("" if detector is None else f" + {detector.key}")
    return label, n_images / seconds, batch


def fmt_s(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"


def fmt_mb(value: float) -> str:
    return f"{value / 2**20:.0f} MB"


def print_tables(results: list[dict], ingest: tuple[str, float, int], queries: int, exact_queries: int) -> None:
    sizes = [r["size"] for r in results]
    head = "".join(f" | {f'{s // 1000}k p50':>10} {'p95':>7} {'rec@1':>5} {'x warm':>7}" for s in sizes)
    print(f"\nSearch latency, one query per call, k={K}, ms ({queries} queries; exact scan {exact_queries}; "
          f"rec@1 = same top-1 as the exact scan; x warm = p50 / warm Faiss cache p50)")
    print(f"{'':<44}{head}")
    labels = list(dict.fromkeys(label for result in results for label in result["rows"]))
    for label in labels:
        line = f"{label:<44}"
        for result in results:
            if label not in result["rows"]:
                line += f" | {'':>10} {'':>7} {'':>5} {'':>7}"
                continue
            ms, rec = result["rows"][label]
            base = statistics.median(result["rows"]["Faiss cache, search_gallery (warm)"][0])
            p50 = statistics.median(ms)
            line += f" | {p50:>10.2f} {percentile(ms, 95):>7.2f} {'' if rec != rec else f'{rec:.2f}':>5} {p50 / base:>6.1f}x"
        print(line)
    print(f"\nBuild, load, memory{'':<25}" + "".join(f" | {f'{s // 1000}k':>12}" for s in sizes) + " | per 100k (largest)")
    big = results[-1]
    scale = 100_000 / big["size"]
    lines = [
        ("insert embeddings, binary COPY", lambda r: fmt_s(r["copy_s"]), fmt_s(big["copy_s"] * scale)),
        ("  rows/s", lambda r: f"{r['size'] / r['copy_s']:,.0f}", ""),
        ("read vectors from pgvector (binary COPY)", lambda r: fmt_s(r["fetch_s"]), ""),
        ("Faiss build from arrays (type)", lambda r: f"{fmt_s(r['build_s'])} {r['faiss_type']}", ""),
        ("rebuild from pgvector (read+build+persist)", lambda r: fmt_s(r["rebuild_s"]), ""),
        ("cold load from object storage", lambda r: fmt_s(r["load_s"]), ""),
        ("  ratio rebuild / cold load", lambda r: f"{r['rebuild_s'] / r['load_s']:.1f}x", ""),
        ("cache size, len(to_bytes())", lambda r: fmt_mb(r["bytes"]), fmt_mb(big["bytes"] * scale)),
        ("cache RSS delta (fresh process, from_bytes)", lambda r: fmt_mb(r["rss_delta"]), fmt_mb(big["rss_delta"] * scale)),
        ("HNSW partial index build (CONCURRENTLY)", lambda r: fmt_s(r["hnsw_build_s"]), ""),
        ("HNSW partial index size on disk", lambda r: fmt_mb(r["hnsw_bytes"]), fmt_mb(big["hnsw_bytes"] * scale)),
    ]
    for label, value, per in lines:
        print(f"{label:<44}" + "".join(f" | {value(r):>12}" for r in results) + f" | {per}")
    extractor, rate, batch = ingest
    print(f"\nIngest: {rate:.1f} images/s per worker process (reference_images_embed_with, batches of {batch}, "
          f"480x640 JPEG photos, extractor {extractor})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=40)
    parser.add_argument("--ingest-images", type=int, default=96)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="shitu-bench-index-"))
    scratch.chmod(0o755)  # as root, PostgreSQL runs as another user that must enter it
    server = None
    try:
        started = time.perf_counter()
        server = start_stack(scratch)
        print(f"embedded PostgreSQL + migrations: {time.perf_counter() - started:.1f} s", flush=True)
        from django.contrib.auth import get_user_model

        from shitu_platform.tenancy.services import tenant_create

        tenant = tenant_create(name="Bench", owner=get_user_model().objects.create_user("bench-owner"))
        rng = np.random.default_rng(0)
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(run_size(server.url, tenant, size, args.queries, args.exact_queries, rng))
            print(f"{size} vectors done ({time.perf_counter() - started:.0f} s)", flush=True)
        ingest = ingest_rate(tenant, args.ingest_images)
        print_tables(results, ingest, args.queries, args.exact_queries)
    finally:
        from django.db import connections

        connections.close_all()
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
