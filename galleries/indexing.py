"""Each gallery's Faiss cache: built from pgvector (the truth), refreshed incrementally, persisted to object storage.

A cache is keyed by (gallery, extractor model key) and remembers the gallery `index_version` it reflects.
On use, if the gallery's version moved on, the cache diffs its ids against the Embedding ids in
PostgreSQL (integers only), removes what is gone and fetches just the new vectors. A worker that
starts cold loads the last persisted cache and refreshes from there instead of rebuilding.

Recognition searches through `search_gallery`: the warm cache when it is at the gallery's current version,
otherwise pgvector at once while a background thread warms the cache, so no request waits for a load or rebuild.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from django.conf import settings
from django.db import connection

from galleries.models import FEATURE_DIM, Embedding, Gallery
from galleries.pgvector_search import fetch_vectors, search_pgvector
from recognition.engine.errors import SearchIndexError
from recognition.engine.search import VectorIndex
from shitu_platform.object_store import object_store
from shitu_platform.storage import ObjectNotFound, tenant_key

logger = logging.getLogger(__name__)

_HEADER_BYTES = 8
# After a failed background warm-up, searches stay on pgvector this long before the next attempt.
WARM_RETRY_SECONDS = 30.0


class SearchGate:
    """Many searches or one writer. A search may decline to wait for a writer (and ask pgvector instead)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False

    def acquire_read(self, *, wait: bool) -> bool:
        with self._condition:
            if self._writer and not wait:
                return False
            self._condition.wait_for(lambda: not self._writer)
            self._readers += 1
            return True

    def release_read(self) -> None:
        with self._condition:
            self._readers -= 1
            if not self._readers:
                self._condition.notify_all()

    @contextmanager
    def reading(self) -> Iterator[None]:
        self.acquire_read(wait=True)
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._writer = True  # set before draining readers, so new searches go elsewhere instead of queueing
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


@dataclass
class CachedIndex:
    index: VectorIndex
    version: int
    model_key: str
    gate: SearchGate = field(default_factory=SearchGate, repr=False, compare=False)


@dataclass(frozen=True)
class DriftReport:
    gallery_id: int
    model_key: str
    missing_in_cache: int
    extra_in_cache: int
    in_database: int = 0
    in_cache: int = 0

    @property
    def drift(self) -> int:
        return self.missing_in_cache + self.extra_in_cache


@dataclass(frozen=True)
class AgreementReport:
    """Faiss cache top-k against pgvector's exact top-k, queried with a sample of the gallery's own stored vectors."""

    gallery_id: int
    model_key: str
    sampled: int
    top1_agreement: float  # share of queries whose top-1 is the same (ties within 1e-4 count as the same)
    recall_at_k: float  # share of pgvector's exact top-k ids that the cache's top-k also holds


@dataclass(frozen=True)
class GallerySearchResult:
    scores: np.ndarray  # (m, k) float32, padded with -inf
    ids: np.ndarray  # (m, k) Embedding ids, padded with -1
    version: int  # the gallery index_version the answer reflects (at least)
    source: Literal["faiss", "pgvector"]


class GalleryIndexCache:
    """Per-process caches; thread-safe; never reloads an index per request."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], CachedIndex] = {}
        self._lock = threading.Lock()  # guards the dicts only, never held during a load or a refresh
        self._builders: dict[tuple[int, str], threading.Lock] = {}  # one load/refresh per key at a time
        self._warming: dict[tuple[int, str], threading.Thread] = {}
        self._failed_at: dict[tuple[int, str], float] = {}
        self._warm_slot = threading.Semaphore(1)  # 2-core workers: background builds one at a time

    def get(self, gallery: Gallery, model_key: str) -> CachedIndex:
        """The cache at the gallery's current version, loading or refreshing it first (blocking)."""
        return self._load_or_refresh(gallery, model_key)[0]

    def peek(self, gallery_id: int, model_key: str) -> CachedIndex | None:
        """What this process holds now, as it is: no database or storage access."""
        with self._lock:
            return self._entries.get((gallery_id, model_key))

    def replace(self, gallery_id: int, entry: CachedIndex) -> None:
        with self._lock:
            self._entries[(gallery_id, entry.model_key)] = entry

    def forget(self, gallery_id: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if gallery_id is None or k[0] == gallery_id]:
                del self._entries[key]

    def warm_in_background(self, gallery: Gallery, model_key: str) -> threading.Thread | None:
        """Load/refresh the cache in a daemon thread (one per key); the thread uses and closes its own DB connection.

        None while a recent attempt's failure is being waited out (WARM_RETRY_SECONDS)."""
        key = (gallery.pk, model_key)
        with self._lock:
            running = self._warming.get(key)
            if running is not None and running.is_alive():
                return running
            if time.monotonic() - self._failed_at.get(key, -WARM_RETRY_SECONDS) < WARM_RETRY_SECONDS:
                return None
            thread = threading.Thread(target=self._warm, args=key, name=f"warm-gallery-{gallery.pk}", daemon=True)
            self._warming[key] = thread
        thread.start()
        return thread

    def wait_for_warming(self, timeout: float | None = None) -> bool:
        """Join the background warm-ups started so far; True when none is still running."""
        with self._lock:
            threads = list(self._warming.values())
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    def _warm(self, gallery_id: int, model_key: str) -> None:
        try:
            with self._warm_slot:
                gallery = Gallery.unscoped.select_related("tenant").filter(pk=gallery_id).first()
                if gallery is None:
                    return
                entry, loaded = self._load_or_refresh(gallery, model_key)
                if not loaded and len(entry.index):
                    # Nothing was persisted: save this build so the next cold worker loads it instead of rebuilding.
                    with entry.gate.reading():
                        persist(gallery, entry)
        except Exception:  # noqa: BLE001 - a failed warm-up only means searches keep going to pgvector
            logger.exception("warming the index cache of gallery %s (%s) failed", gallery_id, model_key)
            with self._lock:
                self._failed_at[(gallery_id, model_key)] = time.monotonic()
        finally:
            connection.close()

    def _builder(self, key: tuple[int, str]) -> threading.Lock:
        with self._lock:
            return self._builders.setdefault(key, threading.Lock())

    def _load_or_refresh(self, gallery: Gallery, model_key: str) -> tuple[CachedIndex, bool]:
        """(entry at the current version, whether it came from this process or object storage rather than a full build)."""
        key = (gallery.pk, model_key)
        with self._builder(key):
            current = gallery_index_version(gallery)  # read before the ids: the content is at least this fresh
            entry = self.peek(*key)
            if entry is None:
                entry = load_persisted(gallery, model_key)
                loaded = entry is not None
                if entry is None:
                    entry = CachedIndex(_new_index(), version=-1, model_key=model_key)
                if entry.version != current:
                    refresh_from_database(entry, gallery)  # not visible to searches yet: no gate needed
                    entry.version = current
                self.replace(gallery.pk, entry)
                return entry, loaded
            if entry.version != current:
                with entry.gate.writing():
                    refresh_from_database(entry, gallery)
                    entry.version = current
            return entry, True


gallery_index_cache = GalleryIndexCache()


def search_gallery(gallery: Gallery, model_key: str, queries: np.ndarray, k: int, *,
                   allowed: np.ndarray | None = None) -> GallerySearchResult:
    """Top-k of the gallery's `model_key` vectors per query row, from this process' Faiss cache when it is warm at
    the gallery's current version, otherwise from pgvector at once while the cache warms in the background.
    `allowed` (embedding ids, e.g. of an attribute filter) limits the search to those vectors, exactly, on both."""
    current = gallery_index_version(gallery)
    entry = gallery_index_cache.peek(gallery.pk, model_key)
    if entry is not None and entry.version >= current and entry.gate.acquire_read(wait=False):
        try:
            if entry.version >= current:  # a refresh may have run in between; it only moves forward
                scores, ids = entry.index.search(queries, k, allowed=allowed)
                return GallerySearchResult(scores, ids, entry.version, "faiss")
        finally:
            entry.gate.release_read()
    gallery_index_cache.warm_in_background(gallery, model_key)
    scores, ids = search_pgvector(gallery, model_key, queries, k, allowed=allowed)
    return GallerySearchResult(scores, ids, current, "pgvector")


class GallerySearcher:
    """The `index` a RecognitionPipeline searches, backed by `search_gallery`; remembers the last answer's version and source."""

    def __init__(self, gallery: Gallery, model_key: str, *, allowed: np.ndarray | None = None) -> None:
        self.gallery = gallery
        self.model_key = model_key
        self.allowed = allowed
        self.dim = FEATURE_DIM
        self.last: GallerySearchResult | None = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.last = search_gallery(self.gallery, self.model_key, queries, k, allowed=self.allowed)
        return self.last.scores, self.last.ids

    @property
    def version(self) -> int:
        return self.last.version if self.last is not None else gallery_index_version(self.gallery)


def gallery_searcher(gallery: Gallery, model_key: str, *, allowed: np.ndarray | None = None) -> GallerySearcher:
    return GallerySearcher(gallery, model_key, allowed=allowed)


def gallery_index_version(gallery: Gallery) -> int:
    return Gallery.unscoped.values_list("index_version", flat=True).get(pk=gallery.pk)


def _new_index() -> VectorIndex:
    return VectorIndex(dim=FEATURE_DIM, index_type=settings.SHITU_INDEX_TYPE, threads=settings.ENGINE_THREADS)


def embedding_ids(gallery: Gallery, model_key: str) -> np.ndarray:
    ids = Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).values_list("id", flat=True)
    return np.sort(np.fromiter(ids, dtype=np.int64))


def refresh_from_database(
    entry: CachedIndex, gallery: Gallery, *, progress: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """Bring the cache to what pgvector holds now; returns (added, removed)."""
    live = embedding_ids(gallery, entry.model_key)
    cached = entry.index.ids()
    removed = np.setdiff1d(cached, live, assume_unique=True)
    added = np.setdiff1d(live, cached, assume_unique=True)
    if len(removed):
        entry.index.remove(removed)
    if len(added):
        # Everything new (a first build): read the whole gallery in id order instead of naming every id.
        ids, vectors = fetch_vectors(gallery, entry.model_key, None if len(added) == len(live) else added, progress=progress)
        if len(ids):
            entry.index.add(ids, vectors)
    if entry.index.needs_compaction:
        entry.index.compact()
    return len(added), len(removed)


def persisted_key(gallery: Gallery, model_key: str) -> str:
    safe_model = model_key.replace("@", "_at_").replace("/", "_")
    return tenant_key(gallery.tenant_id, "galleries", str(gallery.pk), "index", f"{safe_model}.faiss")


def persist(gallery: Gallery, entry: CachedIndex) -> None:
    """Save the cache with the version it reflects: a JSON header length, the header, then the index bytes."""
    header = json.dumps({"version": entry.version, "model_key": entry.model_key}).encode()
    blob = len(header).to_bytes(_HEADER_BYTES, "big") + header + entry.index.to_bytes()
    object_store().put(persisted_key(gallery, entry.model_key), blob)


def load_persisted(gallery: Gallery, model_key: str) -> CachedIndex | None:
    """The persisted cache, or None when there is none or it cannot be read (then it is rebuilt from pgvector)."""
    try:
        blob = object_store().get(persisted_key(gallery, model_key))
    except ObjectNotFound:
        return None
    try:
        header_length = int.from_bytes(blob[:_HEADER_BYTES], "big")
        header = json.loads(blob[_HEADER_BYTES : _HEADER_BYTES + header_length])
        index = VectorIndex.from_bytes(blob[_HEADER_BYTES + header_length :])
        version, stored_key = int(header["version"]), header["model_key"]
    except (SearchIndexError, ValueError, KeyError, TypeError) as error:
        logger.warning("persisted index cache of gallery %s (%s) is unreadable, rebuilding: %s", gallery.pk, model_key, error)
        return None
    index.threads = settings.ENGINE_THREADS
    return CachedIndex(index=index, version=version, model_key=stored_key)


def rebuild(gallery: Gallery, model_key: str, *, progress: Callable[[int], None] | None = None) -> CachedIndex:
    """Build from scratch out of pgvector (type re-chosen for the size), persist, and replace this process' cache."""
    version = gallery_index_version(gallery)
    entry = CachedIndex(_new_index(), version=version, model_key=model_key)
    refresh_from_database(entry, gallery, progress=progress)
    persist(gallery, entry)
    gallery_index_cache.replace(gallery.pk, entry)
    return entry


def drift(gallery: Gallery, model_key: str) -> DriftReport:
    """Compare the cache this process would serve with pgvector: 0 means they hold the same vectors."""
    entry = gallery_index_cache.get(gallery, model_key)
    live = embedding_ids(gallery, model_key)
    with entry.gate.reading():
        cached = entry.index.ids()
    return DriftReport(
        gallery_id=gallery.pk, model_key=model_key,
        missing_in_cache=len(np.setdiff1d(live, cached)), extra_in_cache=len(np.setdiff1d(cached, live)),
        in_database=len(live), in_cache=len(cached),
    )


def agreement(gallery: Gallery, model_key: str, *, sample: int = 200, k: int = 5, seed: int = 0) -> AgreementReport:
    """Query the cache and pgvector's exact scan with up to `sample` stored vectors; 1.0 / 1.0 for an exact, in-sync cache."""
    live = embedding_ids(gallery, model_key)
    chosen = np.sort(np.random.default_rng(seed).choice(live, size=min(sample, len(live)), replace=False)) if len(live) else live
    _, queries = fetch_vectors(gallery, model_key, chosen)
    if not len(queries):
        return AgreementReport(gallery.pk, model_key, 0, 1.0, 1.0)
    entry = gallery_index_cache.get(gallery, model_key)
    with entry.gate.reading():
        cache_scores, cache_ids = entry.index.search(queries, k)
    exact_scores, exact_ids = search_pgvector(gallery, model_key, queries, k, exact=True)
    same_top1 = (cache_ids[:, 0] == exact_ids[:, 0]) | (np.abs(cache_scores[:, 0] - exact_scores[:, 0]) < 1e-4)
    hits = sum(len(set(c[c >= 0]) & set(e[e >= 0])) for c, e in zip(cache_ids, exact_ids))
    return AgreementReport(
        gallery.pk, model_key, len(queries), float(same_top1.mean()), hits / max(1, int((exact_ids >= 0).sum())),
    )
