"""The generated demo products through the API and the extractor: shared by tests that need real-looking photos."""
from __future__ import annotations

import time


def upload_file(data: bytes, name: str = "photo.jpg"):
    """Bytes as the named file object a multipart test client sends."""
    import io

    handle = io.BytesIO(data)
    handle.name = name
    return handle


def import_demo_gallery(client, name: str = "Demo shelf", timeout: float = 180) -> int:
    """Create a gallery of the generated demo products through the API and wait until every image is embedded."""
    from galleries.models import ReferenceImage
    from shitu_platform.demo_data import demo_gallery_photos

    gallery = client.post("/api/v1/galleries/", {"name": name}, format="json").json()["id"]
    products: dict[str, int] = {}
    for photo in demo_gallery_photos():
        if photo.label not in products:
            products[photo.label] = client.post("/api/v1/products/", {"gallery": gallery, "label": photo.label},
                                                format="json").json()["id"]
        client.post(f"/api/v1/products/{products[photo.label]}/images/", {"image": [upload_file(photo.data)]},
                    format="multipart")
    deadline = time.monotonic() + timeout
    while ReferenceImage.unscoped.filter(gallery_id=gallery, status="pending").exists():
        assert time.monotonic() < deadline, "reference images were not embedded"
        time.sleep(0.3)
    return gallery


def demo_products_found(extractor, *, views_per_product: int = 3) -> int:
    """How many of the 12 demo query photos find their product first among the demo gallery photos."""
    from recognition.engine.imageio import load_image
    from shitu_platform.demo_data import demo_gallery_photos, demo_query_photos

    gallery = demo_gallery_photos(views_per_product=views_per_product)
    queries = demo_query_photos()
    gallery_features = extractor.extract([load_image(p.data) for p in gallery])
    query_features = extractor.extract([load_image(p.data) for p in queries])
    best = (query_features @ gallery_features.T).argmax(axis=1)
    return sum(gallery[index].label == query.label for index, query in zip(best, queries))

