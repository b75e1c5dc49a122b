"""Reference local features: computed once when a reference image is embedded, stored beside its image.

Geometric verification needs each candidate's RootSIFT keypoints. They are extracted from the same crop the
global vector came from, written to object storage (``<image key>.rootsift``, a small versioned binary format,
no pickle) before the row points at them, and read back through a per-process LRU cache, so a recognition
fetches only its candidates' features and a warm worker fetches nothing.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
from django.conf import settings

from galleries.models import Embedding, ReferenceImage
from recognition.engine.local_features import LocalFeatures, LocalFeaturesError, extract_local_features
from shitu_platform.object_store import object_store
from shitu_platform.storage.base import ObjectStoreError

SUFFIX = ".rootsift"
_cache: "OrderedDict[int, LocalFeatures]" = OrderedDict()
_lock = threading.Lock()


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
                .values_list("pk", "reference_image_id", "reference_image__local_features_key"))
    out: dict[int, LocalFeatures] = {}
    for embedding_id, image_id, key in rows:
        features = _cached(image_id)
        if features is None:
            try:
                features = LocalFeatures.from_bytes(object_store().get(key))
            except (ObjectStoreError, LocalFeaturesError):
                continue  # missing or damaged: this candidate is simply not verified
            _remember(image_id, features)
        out[embedding_id] = features
    return out


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
