"""The process-wide ObjectStore built from settings.OBJECT_STORE."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from shitu_platform.storage import ObjectStore, object_store_from_config


@lru_cache(maxsize=1)
def object_store() -> ObjectStore:
    return object_store_from_config(settings.OBJECT_STORE)
