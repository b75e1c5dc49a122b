"""Background clean-up of the gallery photos (and their local features) that no reference image points at."""
from __future__ import annotations

from galleries.models import ReferenceImage
from shitu_platform.sweeps import unreferenced_objects_delete


def reference_image_objects_sweep() -> int:
    """Remove stored gallery photos and local-feature files that no ReferenceImage row references (rows are deleted
    first, objects here); across every tenant, so a deleted tenant's objects go too."""
    referenced = set(ReferenceImage.unscoped.values_list("object_key", flat=True))
    referenced |= set(ReferenceImage.unscoped.exclude(local_features_key="").values_list("local_features_key", flat=True))
    return unreferenced_objects_delete(prefix="tenants/", referenced=referenced,
                                       is_data=lambda key: "/galleries/" in key and "/images/" in key)
