"""Reference images: upload → object storage → pending row → worker embeds into pgvector → searchable in the cache."""
import io
import time

import numpy as np
import pytest
from PIL import Image

from galleries.indexing import drift, gallery_index_cache
from galleries.models import Embedding, Gallery, ReferenceImage
from modelhub.registry import extractor_for
from shitu_platform.object_store import object_store


def png_bytes(colour, size=(96, 128), stripe=None) -> bytes:
    image = Image.new("RGB", size, colour)
    if stripe:
        image.paste(stripe, (0, 0, size[0] // 3, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _product(client, gallery_name="Shelf", label="cola"):
    gallery = client.post("/api/v1/galleries/", {"name": gallery_name}, format="json").json()["id"]
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": label}, format="json").json()["id"]
    return gallery, product


def _upload(client, product, *payloads, **extra):
    files = [io.BytesIO(p) for p in payloads]
    for number, handle in enumerate(files):
        handle.name = f"photo{number}.png"
    return client.post(f"/api/v1/products/{product}/images/", {"image": files, **extra}, format="multipart")


def _wait_ready(ids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ReferenceImage.unscoped.filter(pk__in=ids, status="pending").exists():
            return
        time.sleep(0.2)
    raise AssertionError("images still pending")


@pytest.mark.django_db
def test_upload_stores_object_then_row_and_is_idempotent(tenant_a, monkeypatch):
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: None)  # no worker in this test
    client = tenant_a.key_client("member")
    _, product = _product(client)
    data = png_bytes((200, 30, 30))
    first = _upload(client, product, data)
    assert first.status_code == 201, first.json()
    row = ReferenceImage.unscoped.get(pk=first.json()[0]["id"])
    assert row.status == "pending" and (row.width, row.height) == (96, 128)
    assert object_store().get(row.object_key) == data
    assert row.object_key.startswith(f"tenants/{tenant_a.tenant.pk}/")
    again = _upload(client, product, data)
    assert again.json()[0]["id"] == row.pk and again.json()[0]["created"] is False
    assert ReferenceImage.unscoped.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload,code",
    [(b"", "empty_image"), (b"this is not an image at all", "not_an_image"), (png_bytes((1, 2, 3))[:60], "truncated_image")],
)
def test_bad_uploads_get_a_4xx_code_and_store_nothing(tenant_a, payload, code):
    client = tenant_a.key_client("member")
    _, product = _product(client)
    response = _upload(client, product, payload)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code
    assert ReferenceImage.unscoped.count() == 0


@pytest.mark.django_db
def test_bbox_outside_the_image_is_refused(tenant_a):
    client = tenant_a.key_client("member")
    _, product = _product(client)
    response = _upload(client, product, png_bytes((0, 0, 255)), bbox="[0, 0, 500, 500]")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_bbox"


@pytest.mark.django_db
def test_b_cannot_upload_to_or_delete_as_a(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: None)
    client_a = tenant_a.key_client("member")
    _, product = _product(client_a)
    image_id = _upload(client_a, product, png_bytes((9, 9, 9))).json()[0]["id"]
    client_b = tenant_b.key_client("owner")
    assert _upload(client_b, product, png_bytes((8, 8, 8))).status_code == 404
    assert client_b.get(f"/api/v1/reference-images/{image_id}/").status_code == 404
    assert client_b.delete(f"/api/v1/reference-images/{image_id}/").status_code == 404
    assert ReferenceImage.unscoped.filter(pk=image_id).exists()


@pytest.mark.slow
def test_worker_embeds_uploads_and_search_finds_them_then_forgets_deleted(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    gallery_id, red = _product(client, label="red can")
    green = client.post("/api/v1/products/", {"gallery": gallery_id, "label": "green bottle"}, format="json").json()["id"]
    red_ids = [r["id"] for r in _upload(client, red, png_bytes((220, 20, 20)), png_bytes((200, 40, 30), stripe=(255, 255, 255))).json()]
    green_ids = [r["id"] for r in _upload(client, green, png_bytes((20, 200, 40))).json()]
    _wait_ready(red_ids + green_ids)
    assert set(ReferenceImage.unscoped.filter(pk__in=red_ids + green_ids).values_list("status", flat=True)) == {"ready"}
    extractor = extractor_for(tenant=None)
    assert Embedding.unscoped.filter(model_key=extractor.key).count() == 3

    gallery = Gallery.unscoped.get(pk=gallery_id)
    cache = gallery_index_cache.get(gallery, extractor.key)
    query = extractor.model.extract([np.full((64, 64, 3), (215, 25, 25), dtype=np.uint8)])
    scores, ids = cache.index.search(query, 1)
    best = Embedding.unscoped.get(pk=int(ids[0][0])).reference_image
    assert best.product.label == "red can"
    assert drift(gallery, extractor.key).drift == 0

    assert client.delete(f"/api/v1/reference-images/{best.pk}/").status_code == 204
    cache = gallery_index_cache.get(gallery, extractor.key)
    _, ids_after = cache.index.search(query, 3)
    assert best.embeddings.count() == 0 and int(ids[0][0]) not in set(ids_after[0].tolist())
