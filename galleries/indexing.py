"""Each gallery's Faiss cache: built from pgvector (the truth), refreshed incrementally, persisted to object storage.

A cache is keyed by (gallery, extractor model key) and remembers the gallery `index_version` it reflects.
On use, if the gallery's version moved on, the cache diffs its ids against the Embedding ids in
PostgreSQL (integers only), removes what is gone and fetches just the new vectors. A worker that
starts cold loads the last persisted cache and refreshes from there instead of rebuilding.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from galleries.models import Embedding, Gallery
from recognition.engine.search import VectorIndex
from shitu_platform.object_store import object_store
from shitu_platform.storage import ObjectNotFound, tenant_key

_HEADER_BYTES = 8


@dataclass
class CachedIndex:
    index: VectorIndex
    version: int
    model_key: str


@dataclass(frozen=True)
class DriftReport:
    gallery_id: int
    model_key: str
    missing_in_cache: int
    extra_in_cache: int

    @property
    def drift(self) -> int:
        return self.missing_in_cache + self.extra_in_cache


class GalleryIndexCache:
    """Per-process caches; thread-safe; never reloads an index per request."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], CachedIndex] = {}
        self._lock = threading.Lock()

    def get(self, gallery: Gallery, model_key: str) -> CachedIndex:
        with self._lock:
            current = Gallery.objects.values_list("index_version", flat=True).get(pk=gallery.pk)
            entry = self._entries.get((gallery.pk, model_key))
            if entry is None:
                entry = load_persisted(gallery, model_key) or CachedIndex(_new_index(), version=-1, model_key=model_key)
            if entry.version != current:
                refresh_from_database(entry, gallery)
                entry.version = current
            self._entries[(gallery.pk, model_key)] = entry
            return entry

    def forget(self, gallery_id: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if gallery_id is None or k[0] == gallery_id]:
                del self._entries[key]


gallery_index_cache = GalleryIndexCache()


def _new_index() -> VectorIndex:
    return VectorIndex(dim=512, index_type=settings.SHITU_INDEX_TYPE, threads=settings.ENGINE_THREADS)


def embedding_ids(gallery: Gallery, model_key: str) -> np.ndarray:
    ids = Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).values_list("id", flat=True)
    return np.fromiter(ids, dtype=np.int64)


def refresh_from_database(entry: CachedIndex, gallery: Gallery) -> tuple[int, int]:
    """Bring the cache to what pgvector holds now; returns (added, removed)."""
    live = embedding_ids(gallery, entry.model_key)
    cached = entry.index.ids()
    removed = np.setdiff1d(cached, live, assume_unique=True)
    added = np.setdiff1d(live, cached, assume_unique=True)
    if len(removed):
        entry.index.remove(removed)
    if len(added):
        rows = Embedding.objects.for_tenant(gallery.tenant).filter(pk__in=added.tolist()).values_list("id", "vector")
        ids, vectors = zip(*rows) if rows else ((), ())
        entry.index.add(np.asarray(ids, dtype=np.int64), np.asarray([np.asarray(v, dtype=np.float32) for v in vectors]))
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
    try:
        blob = object_store().get(persisted_key(gallery, model_key))
    except ObjectNotFound:
        return None
    header_length = int.from_bytes(blob[:_HEADER_BYTES], "big")
    header = json.loads(blob[_HEADER_BYTES : _HEADER_BYTES + header_length])
    index = VectorIndex.from_bytes(blob[_HEADER_BYTES + header_length :])
    index.threads = settings.ENGINE_THREADS
    return CachedIndex(index=index, version=int(header["version"]), model_key=header["model_key"])


def rebuild(gallery: Gallery, model_key: str) -> CachedIndex:
    """Build from scratch out of pgvector (type re-chosen for the size), persist, and replace this process' cache."""
    version = Gallery.objects.values_list("index_version", flat=True).get(pk=gallery.pk)
    entry = CachedIndex(_new_index(), version=version, model_key=model_key)
    refresh_from_database(entry, gallery)
    persist(gallery, entry)
    gallery_index_cache.forget(gallery.pk)
    return entry


def drift(gallery: Gallery, model_key: str) -> DriftReport:
    """Compare the cache this process would serve with pgvector: 0 means they hold the same vectors."""
    entry = gallery_index_cache.get(gallery, model_key)
    live = embedding_ids(gallery, model_key)
    cached = entry.index.ids()
    return DriftReport(
        gallery_id=gallery.pk, model_key=model_key,
        missing_in_cache=len(np.setdiff1d(live, cached)), extra_in_cache=len(np.setdiff1d(cached, live)),
    )
