"""Removing stored objects that no row points at: writes put the object first, so a crash can leave one behind.

Each app sweeps its own objects with this helper (`galleries.sweeps`, `recognition.sweeps`), since only it knows
which of its rows refer to them."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from shitu_platform.object_store import object_store
from shitu_platform.storage import ObjectStoreError

ORPHAN_GRACE = timedelta(hours=1)  # an object younger than this may belong to an upload whose row is being written


def unreferenced_objects_delete(*, prefix: str, is_data: Callable[[str], bool], referenced: set[str]) -> int:
    """Delete the objects under `prefix` that `is_data` claims and `referenced` lacks, once past the grace period;
    returns how many went. An object that cannot be deleted now is left for the next sweep."""
    cutoff = timezone.now() - ORPHAN_GRACE
    removed = 0
    for info in object_store().list(prefix):
        if not is_data(info.key) or info.key in referenced:
            continue
        if info.last_modified is not None and info.last_modified > cutoff:
            continue
        try:
            object_store().delete(info.key)
            removed += 1
        except ObjectStoreError:
            continue
    return removed
