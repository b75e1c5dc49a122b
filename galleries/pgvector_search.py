"""Vector search inside PostgreSQL: inner product over one gallery's embeddings, plus one partial HNSW index per
(gallery, model) once a gallery is big enough, and bulk vector reads for building the Faiss caches.

Why partial indexes: a shared HNSW index filtered by tenant measured 130 ms per query (design/TOOLCHAIN.md); a
partial index holds only one gallery's vectors of one model, so the query's filter is implied by the index
predicate and the index answers alone (about 10 ms at 100k). Below the threshold an exact scan of the gallery's
rows (found through the (gallery_id, model_key) btree) is exact and fast.

Gallery id and model key go into the SQL as literals quoted by psycopg.sql, never as bind parameters: the
planner uses a partial index only when it can prove the query's WHERE implies the predicate, which a generic
plan over parameters cannot.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from galleries.models import FEATURE_DIM, Embedding, Gallery
from recognition.engine.errors import DimensionMismatch, SearchIndexError

# Below this many vectors a gallery is searched by an exact scan and gets no HNSW index.
PGVECTOR_INDEX_MIN_VECTORS = 2000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# Candidates the HNSW scan keeps (pgvector's default is 40): recall@1 0.65-0.85 at 40-100 on random 100k vectors.
HNSW_EF_SEARCH = 100
# A 100k x 512 build took 579 s with the default 64MB and 147 s with 1GB (the graph must fit in memory).
BUILD_MAINTENANCE_WORK_MEM = "1GB"
# Rows per binary COPY when reading vectors: about 41 MB of wire data per batch.
FETCH_BATCH_ROWS = 20_000

INDEX_PREFIX = "emb_hnsw_g"
_INDEX_NAME = re.compile(rf"^{INDEX_PREFIX}(\d+)_([0-9a-f]+)$")
# Binary COPY of (id bigint, vector): per row a field count, then length + value per field; vector = dim, unused, floats.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_ROW = np.dtype([
    ("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vector_len", ">i4"),
    ("dim", ">u2"), ("unused", ">u2"), ("vector", ">f4", (FEATURE_DIM,)),
])


@dataclass(frozen=True)
class PgvectorIndex:
    name: str
    gallery_id: int
    model_hash: str
    valid: bool  # False while CREATE INDEX CONCURRENTLY runs, or after it failed
    size_bytes: int


def pgvector_index_min_vectors() -> int:
    return int(getattr(settings, "SHITU_PGVECTOR_INDEX_MIN_VECTORS", PGVECTOR_INDEX_MIN_VECTORS))


def model_hash(model_key: str) -> str:
    return hashlib.sha1(model_key.encode("utf-8")).hexdigest()[:12]


def pgvector_index_name(gallery_id: int, model_key: str) -> str:
    """emb_hnsw_g<gallery id>_<12 hex of sha1(model key)>: at most 41 characters, always a safe identifier."""
    return f"{INDEX_PREFIX}{int(gallery_id)}_{model_hash(model_key)}"


def _table() -> sql.Identifier:
    return sql.Identifier(Embedding._meta.db_table)


def _scope(gallery: Gallery, model_key: str) -> sql.Composed:
    """The rows of one gallery and model; written so that it implies the partial index predicate."""
    return sql.SQL("tenant_id = {tenant} AND gallery_id = {gallery} AND model_key = {model}").format(
        tenant=sql.Literal(int(gallery.tenant_id)), gallery=sql.Literal(int(gallery.pk)), model=sql.Literal(str(model_key))
    )


def _render(query: sql.Composable) -> str:
    connection.ensure_connection()
    return query.as_string(connection.connection)


def _vector_literal(vector: np.ndarray) -> sql.Composed:
    # float32 -> Python float is exact, and repr round-trips, so PostgreSQL parses back the same float32 values.
    return sql.SQL("{}::vector").format(sql.Literal("[" + ",".join(map(repr, vector.tolist())) + "]"))


_ALLOWED_MARK = "__shitu_allowed_ids__"


def knn_sql(gallery: Gallery, model_key: str, query: np.ndarray, k: int, *, restricted: bool = False) -> str:
    """One query's top-k by inner product (`<#>` is the negative inner product, so ascending order).

    `restricted` adds ``AND id = ANY(%s)``: the caller binds the allowed ids as the one parameter (every other
    ``%`` is escaped, so a literal cannot be read as a placeholder)."""
    allowed = sql.SQL(" AND id = ANY(" + _ALLOWED_MARK + ")") if restricted else sql.SQL("")
    text = _render(sql.SQL(
        "SELECT id, vector <#> {query} AS distance FROM {table} WHERE {scope}{allowed} ORDER BY distance LIMIT {k}"
    ).format(query=_vector_literal(query), table=_table(), scope=_scope(gallery, model_key), allowed=allowed,
             k=sql.Literal(int(k))))
    return text.replace("%", "%%").replace(_ALLOWED_MARK, "%s") if restricted else text


def search_pgvector(
    gallery: Gallery, model_key: str, queries: np.ndarray, k: int, *, exact: bool = False, ef_search: int | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of `gallery`'s `model_key` vectors per query row: (scores (m,k) float32, ids (m,k) int64), padded with -inf / -1.

    Uses the gallery's partial HNSW index when it has one (approximate), else scans its rows exactly;
    `exact=True` forces the scan. `allowed` (embedding ids) limits the search to those rows and scans them
    exactly: an HNSW scan filtered afterwards could return fewer than k.
    """
    query_arr = _checked_queries(queries)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise SearchIndexError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    scores = np.full((len(query_arr), k), -np.inf, dtype=np.float32)
    ids = np.full((len(query_arr), k), -1, dtype=np.int64)
    if not len(query_arr):
        return scores, ids
    allowed_ids = None if allowed is None else [int(i) for i in np.unique(np.asarray(allowed, dtype=np.int64))]
    if allowed_ids is not None and not allowed_ids:
        return scores, ids
    with transaction.atomic(), connection.cursor() as cursor:
        if exact or allowed_ids is not None:
            cursor.execute("SET LOCAL enable_indexscan = off")  # bitmap scans of the btree stay allowed
        else:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {int(max(k, ef_search or HNSW_EF_SEARCH))}")
        for row, query in enumerate(query_arr):
            if allowed_ids is None:
                cursor.execute(knn_sql(gallery, model_key, query, k))
            else:
                cursor.execute(knn_sql(gallery, model_key, query, k, restricted=True), [allowed_ids])
            for column, (embedding_id, distance) in enumerate(cursor.fetchall()):
                ids[row, column] = embedding_id
                scores[row, column] = -distance
    return scores, ids


def _checked_queries(queries: np.ndarray) -> np.ndarray:
    arr = np.asarray(queries)
    if arr.ndim != 2 or arr.shape[1] != FEATURE_DIM:
        raise DimensionMismatch(f"queries must have shape (m, {FEATURE_DIM}), got {arr.shape}",
                                details={"expected": FEATURE_DIM, "shape": list(arr.shape)})
    if not np.issubdtype(arr.dtype, np.floating):
        raise SearchIndexError(f"queries must be floating point, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise SearchIndexError("queries contain NaN or infinite values")
    return arr


# --- partial HNSW indexes --------------------------------------------------------------------------------


def pgvector_indexes(gallery_id: int | None = None) -> list[PgvectorIndex]:
    """The per-gallery HNSW indexes on the embedding table (all galleries, or one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid, pg_relation_size(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass AND c.relname LIKE %s",
            [Embedding._meta.db_table, INDEX_PREFIX + "%"],
        )
        rows = cursor.fetchall()
    found = []
    for name, valid, size in rows:
        match = _INDEX_NAME.match(name)  # parsed here: a LIKE on 'g5_' would also match 'g55' ('_' is a wildcard)
        if match and (gallery_id is None or int(match.group(1)) == gallery_id):
            found.append(PgvectorIndex(name, int(match.group(1)), match.group(2), bool(valid), int(size)))
    return sorted(found, key=lambda index: index.name)


def ensure_pgvector_index(gallery: Gallery, model_key: str, *, min_vectors: int | None = None) -> str | None:
    """Create the gallery's partial HNSW index for `model_key` when it holds at least `min_vectors` vectors.

    Returns the index name when it exists (or was just built), None when the gallery is below the threshold or
    another session is building it. Runs CREATE INDEX CONCURRENTLY (writes continue; minutes at 100k vectors), so
    it cannot run inside a transaction: call it from a task or a command. A failed earlier build (left INVALID by
    PostgreSQL) is dropped and redone.
    """
    threshold = pgvector_index_min_vectors() if min_vectors is None else int(min_vectors)
    count = Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).count()
    if count < threshold:
        return None
    name = pgvector_index_name(gallery.pk, model_key)
    existing = {index.name: index for index in pgvector_indexes(gallery.pk)}.get(name)
    if existing is not None and existing.valid:
        return name
    if connection.in_atomic_block:
        raise SearchIndexError("ensure_pgvector_index() builds CONCURRENTLY and cannot run inside a transaction")
    lock_key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key])
        if not cursor.fetchone()[0]:
            return None
        try:
            if existing is not None:  # invalid: a build that failed or was cancelled; IF NOT EXISTS would keep it
                cursor.execute(_render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))))
            cursor.execute(f"SET maintenance_work_mem = '{BUILD_MAINTENANCE_WORK_MEM}'")
            cursor.execute(_render(sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING hnsw (vector vector_ip_ops) "
                "WITH (m = {m}, ef_construction = {ef}) WHERE gallery_id = {gallery} AND model_key = {model}"
            ).format(
                name=sql.Identifier(name), table=_table(), m=sql.Literal(HNSW_M), ef=sql.Literal(HNSW_EF_CONSTRUCTION),
                gallery=sql.Literal(int(gallery.pk)), model=sql.Literal(str(model_key)),
            )))
        finally:
            cursor.execute("RESET maintenance_work_mem")
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key])
    return name


def drop_pgvector_indexes(gallery: Gallery | int, model_key: str | None = None) -> list[str]:
    """Drop the gallery's HNSW indexes (one model's, or all); call it before or after deleting the gallery."""
    gallery_id = gallery if isinstance(gallery, int) else int(gallery.pk)
    wanted = None if model_key is None else model_hash(model_key)
    names = [i.name for i in pgvector_indexes(gallery_id) if wanted is None or i.model_hash == wanted]
    _drop(names)
    return names


def prune_pgvector_indexes() -> list[str]:
    """Drop indexes whose gallery is gone or whose model has no vectors left in it (a retired extractor)."""
    indexes = pgvector_indexes()
    galleries = set(Gallery.unscoped.filter(pk__in={i.gallery_id for i in indexes}).values_list("pk", flat=True))
    live_models: dict[int, set[str]] = {}
    # Platform-wide maintenance over index names, not a tenant read: only (gallery id, model key) pairs are loaded.
    for gallery_id, key in Embedding.unscoped.filter(gallery_id__in=galleries).values_list("gallery_id", "model_key").distinct():
        live_models.setdefault(gallery_id, set()).add(model_hash(key))
    stale = [i.name for i in indexes if i.gallery_id not in galleries or i.model_hash not in live_models.get(i.gallery_id, set())]
    _drop(stale)
    return stale


def _drop(names: Iterable[str]) -> None:
    concurrently = sql.SQL("" if connection.in_atomic_block else "CONCURRENTLY ")
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(_render(sql.SQL("DROP INDEX {}IF EXISTS {}").format(concurrently, sql.Identifier(name))))


# --- bulk reads -------------------------------------------------------------------------------------------


def fetch_vectors(
    gallery: Gallery, model_key: str, ids: np.ndarray | None = None, *, batch_rows: int = FETCH_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, vectors float32 (n,512)) of the gallery's `model_key` embeddings (all, or those of `ids`), sorted by id.

    Read with binary COPY and decoded in bulk: about 10x faster than parsing pgvector's text form per row.
    `progress(n)` is called after each batch with the rows it brought.
    """
    id_parts, vector_parts = [], []
    wanted = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
    after, offset = -1, 0
    while True:
        if wanted is None:
            condition = sql.SQL("id > {}").format(sql.Literal(after))
        else:
            chunk = wanted[offset: offset + batch_rows]
            offset += batch_rows
            if not len(chunk):
                break
            condition = sql.SQL("id = ANY({}::bigint[])").format(sql.Literal("{" + ",".join(map(str, chunk.tolist())) + "}"))
        batch_ids, batch_vectors = _copy_rows(sql.SQL(
            "COPY (SELECT id, vector FROM {table} WHERE {scope} AND {condition} ORDER BY id LIMIT {limit}) TO STDOUT (FORMAT BINARY)"
        ).format(table=_table(), scope=_scope(gallery, model_key), condition=condition, limit=sql.Literal(int(batch_rows))))
        id_parts.append(batch_ids)
        vector_parts.append(batch_vectors)
        if progress is not None and len(batch_ids):
            progress(len(batch_ids))
        if wanted is None:
            if len(batch_ids) < batch_rows:
                break
            after = int(batch_ids[-1])
    if not id_parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, FEATURE_DIM), dtype=np.float32)
    found_ids, vectors = np.concatenate(id_parts), np.concatenate(vector_parts)
    order = np.argsort(found_ids, kind="stable")
    return found_ids[order], vectors[order]


def _copy_rows(statement: sql.Composable) -> tuple[np.ndarray, np.ndarray]:
    buffer = bytearray()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(_render(statement)) as copy:
            for block in copy:
                buffer += block
    return parse_binary_copy(bytes(buffer))


def parse_binary_copy(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode PostgreSQL binary COPY output of (id bigint, vector(512)) rows: every row has the same size."""
    if not data.startswith(_COPY_SIGNATURE):
        raise SearchIndexError("not PostgreSQL binary COPY output")
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension: -2]
    if data[-2:] != b"\xff\xff" or len(body) % _COPY_ROW.itemsize:
        raise SearchIndexError(f"binary COPY output of {len(data)} bytes is not whole (id, vector({FEATURE_DIM})) rows")
    rows = np.frombuffer(body, dtype=_COPY_ROW)
    if len(rows) and not (
        (rows["fields"] == 2).all() and (rows["id_len"] == 8).all()
        and (rows["vector_len"] == 4 + 4 * FEATURE_DIM).all() and (rows["dim"] == FEATURE_DIM).all()
    ):
        raise SearchIndexError("binary COPY rows are not (id bigint, vector(512))")
    return rows["id"].astype(np.int64), rows["vector"].astype(np.float32)
