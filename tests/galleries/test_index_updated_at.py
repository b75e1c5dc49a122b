"""`index_updated_at` on galleries: moved by what changes the searchable vectors (an image embedded or removed), not by a
rename; shown by the list, the detail and the create answer."""
import io

import pytest
from django.utils.dateparse import parse_datetime

from galleries.services import reference_images_embed
from tests.support.images import product_photo

pytestmark = pytest.mark.django_db


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _updated_at(client, gallery_id: int):
    value = client.get(f"/api/v1/galleries/{gallery_id}/").json()["index_updated_at"]
    return parse_datetime(value) if value is not None else None


def test_upload_and_delete_move_it_forward_and_a_rename_does_not(tenant_a, monkeypatch):
    queued: list[list[int]] = []
    # the worker's embedding service runs here, in-process, instead of on a queue
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: queued.append(ids))
    client = tenant_a.key_client("member")
    created = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json")
    assert created.status_code == 201 and created.json()["index_updated_at"] is None
    gallery = created.json()["id"]
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": "Red Cola"}, format="json").json()["id"]

    uploaded = client.post(f"/api/v1/products/{product}/images/",
                           {"image": [_file(product_photo((210, 30, 30), (120, 160)))]}, format="multipart")
    assert uploaded.status_code == 201, uploaded.json()
    assert _updated_at(client, gallery) is None  # stored, not yet searchable
    reference_images_embed(reference_image_ids=queued.pop())
    after_upload = _updated_at(client, gallery)
    assert after_upload is not None

    renamed = client.patch(f"/api/v1/galleries/{gallery}/", {"name": "Soft drinks"}, format="json")
    assert renamed.status_code == 200 and parse_datetime(renamed.json()["index_updated_at"]) == after_upload
    assert _updated_at(client, gallery) == after_upload

    image = uploaded.json()[0]["id"]
    assert client.delete(f"/api/v1/reference-images/{image}/").status_code == 204
    after_delete = _updated_at(client, gallery)
    assert after_delete > after_upload
    listed = client.get("/api/v1/galleries/").json()["results"]
    assert [parse_datetime(g["index_updated_at"]) for g in listed if g["id"] == gallery] == [after_delete]


def test_the_field_is_read_only(tenant_a):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "G", "index_updated_at": "2020-01-01T00:00:00Z"},
                          format="json").json()
    assert gallery["index_updated_at"] is None
