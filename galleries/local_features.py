"""Reference local features: computed once when a reference image is embedded, stored beside its image.

Geometric verification needs each candidate's RootSIFT keypoints. They are extracted from the same crop the
global vector came from, written to object storage (``<image key>.rootsift``, a small versioned binary format,
no pickle) before the row points at them, and read back through a per-process LRU cache, so a recognition
fetches only its candidates' features and a warm worker fetches nothing. A cold worker first reads the gallery's
pack (``galleries.local_feature_pack``: all its images' features in one object, kept in memory and decoded per
image as candidates need them) and only reads the images the pack does not hold yet one by one.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from galleries.models import Embedding, ReferenceImage
from recognition.engine.local_features import (
    LocalFeatures,
    LocalFeaturesError,
    extract_local_features,
)
from shitu_platform.object_store import object_store
from shitu_platform.storage.base import ObjectNotFound, ObjectStoreError

if TYPE_CHECKING:
    from galleries.local_feature_pack import LocalFeaturePack

SUFFIX = ".rootsift"
PACK_RETRY_SECONDS = 60.0  # after finding no pack (or an unreadable one), how long before looking again
_cache: OrderedDict[int, LocalFeatures] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class _PackSeen:
    """What this process last found for a gallery's pack, so that it reads each pack at most once."""

    attempted_version: int  # the gallery's index_version when it looked
    attempted_at: float
    signature: tuple[int, int, int] | None  # None: no readable pack then
    image_ids: frozenset[int]
    pack: LocalFeaturePack | None = None  # its body, kept while within the features budget


_packs: OrderedDict[int, _PackSeen] = OrderedDict()
_pack_locks: dict[int, threading.Lock] = {}


def features_key(image: ReferenceImage) -> str:
    return f"{image.object_key}{SUFFIX}"


def local_features_store(*, image: ReferenceImage, crop: np.ndarray) -> None:
    """Extract and store the crop's features (object first, then the row); a failure leaves the image unverifiable,
    never unembedded: verification skips candidates without features."""
    try:
        features = extract_local_features(crop, max_features=settings.SHITU_LOCAL_FEATURES)
    except LocalFeaturesError:
        return
    key = features_key(image)
    try:
        object_store().put(key, features.to_bytes())
    except ObjectStoreError:
        return  # the backfill command (or the next embed) writes it once storage is back
    ReferenceImage.unscoped.filter(pk=image.pk).update(local_features_key=key)
    image.local_features_key = key
    _remember(image.pk, features)


def local_features_for_embeddings(*, tenant, embedding_ids: Sequence[int]) -> dict[int, LocalFeatures]:
    """Reference features by embedding id (the ids the index returns), for this tenant's rows only."""
    rows = list(Embedding.objects.for_tenant(tenant).filter(pk__in=list(embedding_ids))
                .exclude(reference_image__local_features_key="")
                .values_list("pk", "reference_image_id", "reference_image__local_features_key",
                             "gallery_id", "gallery__index_version"))
    found = {image_id: features for _, image_id, *_ in rows if (features := _cached(image_id)) is not None}
    missing_by_gallery: dict[tuple[int, int], set[int]] = {}
    for _, image_id, _, gallery_id, version in rows:
        if image_id not in found:
            missing_by_gallery.setdefault((gallery_id, version), set()).add(image_id)
    for (gallery_id, version), wanted in missing_by_gallery.items():
        found.update(_from_pack(tenant_id=tenant.pk, gallery_id=gallery_id, version=version, wanted=wanted))
    out: dict[int, LocalFeatures] = {}
    for embedding_id, image_id, key, _, _ in rows:
        features = found.get(image_id)
        if features is None:  # added after the gallery's pack was built: read on its own
            try:
                features = LocalFeatures.from_bytes(object_store().get(key))
            except (ObjectStoreError, LocalFeaturesError):
                continue  # missing or damaged: this candidate is simply not verified
            _remember(image_id, features)
            found[image_id] = features
        out[embedding_id] = features
    return out


def local_features_cache_clear() -> None:
    """Forget every cached feature and pack this process has seen: the state of a freshly started worker."""
    with _lock:
        _cache.clear()
        _packs.clear()


def _from_pack(*, tenant_id: int, gallery_id: int, version: int, wanted: set[int]) -> dict[int, LocalFeatures]:
    """The wanted images' features out of the gallery's pack, read from storage once and kept in memory (while it fits
    the features budget), so later misses of the gallery decode from it; only what is asked for is decoded.

    A process reads a gallery's pack once; again only when the gallery has changed since and a wanted image is
    not in the pack it read (a rebuild may hold it), or after PACK_RETRY_SECONDS when there was none to read."""
    from galleries.local_feature_pack import (
        LocalFeaturePackError,
        local_feature_pack_key,
        pack_max_images,
        pack_read_body,
        pack_read_header,
    )

    with _lock:
        gallery_lock = _pack_locks.setdefault(gallery_id, threading.Lock())
    with gallery_lock:  # concurrent requests of one cold gallery share one read
        found = {image_id: features for image_id in wanted if (features := _cached(image_id)) is not None}
        unread = wanted - set(found)
        seen = _packs.get(gallery_id)
        if seen is not None and seen.pack is not None:
            found |= _decoded(seen.pack, unread)
            unread -= set(found)
        if not unread or (seen is not None and not _worth_another_look(seen, version, unread)):
            return found
        signature, image_ids, pack = None, frozenset(), None
        try:
            with object_store().open(local_feature_pack_key(tenant_id=tenant_id, gallery_id=gallery_id)) as stream:
                header = pack_read_header(stream, gallery_id=gallery_id)
                signature, image_ids = header.signature, header.image_ids
                if seen is not None and seen.signature == signature:
                    pack = seen.pack  # the same build again: its body is known (or was too large to keep)
                elif len(header.rows) <= pack_max_images():
                    pack = pack_read_body(stream, header)
        except ObjectNotFound:
            pass
        except (ObjectStoreError, LocalFeaturePackError, OSError):
            signature, image_ids, pack = None, frozenset(), None  # damaged or unreachable: images are read one by one
        if pack is not None:
            found |= _decoded(pack, unread)
        with _lock:
            _packs[gallery_id] = _PackSeen(version, time.monotonic(), signature, image_ids, pack)
            _packs.move_to_end(gallery_id)
            _keep_packs_within_budget()
        return found


def _decoded(pack, image_ids: set[int]) -> dict[int, LocalFeatures]:
    out = {}
    for image_id in image_ids:
        try:
            features = pack.features_of(image_id)
        except LocalFeaturesError:
            continue  # a damaged blob: that image is read on its own
        if features is not None:
            _remember(image_id, features)
            out[image_id] = features
    return out


def _keep_packs_within_budget() -> None:
    """Packs kept in memory hold at most SHITU_LOCAL_FEATURES_CACHE images together: the oldest are let go (what
    this process saw of them stays, so they are not read again; their images are then read one by one)."""
    held = sum(len(seen.pack.header.rows) for seen in _packs.values() if seen.pack is not None)
    for gallery_id, seen in list(_packs.items()):
        if held <= settings.SHITU_LOCAL_FEATURES_CACHE:
            break
        if seen.pack is not None:
            held -= len(seen.pack.header.rows)
            _packs[gallery_id] = dataclasses.replace(seen, pack=None)


def _worth_another_look(seen: _PackSeen, version: int, unread: set[int]) -> bool:
    if seen.signature is None:
        return time.monotonic() - seen.attempted_at >= PACK_RETRY_SECONDS
    return seen.attempted_version < version and bool(unread - seen.image_ids)


def images_without_local_features(queryset) -> Iterable[ReferenceImage]:
    return queryset.filter(status=ReferenceImage.Status.READY, local_features_key="").order_by("pk")


def _cached(image_id: int) -> LocalFeatures | None:
    with _lock:
        features = _cache.get(image_id)
        if features is not None:
            _cache.move_to_end(image_id)
        return features


def _remember(image_id: int, features: LocalFeatures) -> None:
    with _lock:
        _cache[image_id] = features
        _cache.move_to_end(image_id)
        while len(_cache) > settings.SHITU_LOCAL_FEATURES_CACHE:
            _cache.popitem(last=False)
