"""Gallery rows built directly, for tests that need a gallery's shape but not a worker."""
from __future__ import annotations

from typing import Any

from galleries.models import Gallery, Product, ReferenceImage


def ready_gallery_without_worker(world: Any, *, products: int = 3, shots: int = 3, name: str = "Drinks fridge") -> Gallery:
    """A gallery whose photos count as embedded (status ready), as a fine-tune needs, without running a worker."""
    gallery = Gallery(tenant=world.tenant, name=name)
    gallery.save()
    for number in range(products):
        product = Product(tenant=world.tenant, gallery=gallery, label=f"drink {number}")
        product.save()
        for shot in range(shots):
            ReferenceImage(tenant=world.tenant, gallery=gallery, product=product, object_key=f"k{number}-{shot}",
                           checksum=f"{number}-{shot}", size_bytes=1, status="ready").save()
    return gallery
