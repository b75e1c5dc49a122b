"""POST /api/v1/recognitions/ with `reference_image`: a stored reference photo is recognised like an upload, and
another tenant's id reads exactly like one that does not exist."""
import io
import time

import pytest

from galleries.models import ReferenceImage
from recognition.models import Recognition
from tests.support.images import product_photo

COLOURS = {"Red Cola 330 ml": (210, 30, 30), "Green Tea": (40, 170, 60), "Blue Water": (30, 70, 200)}


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _upload(client, gallery: int, label: str, photos: list[bytes]) -> list[int]:
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": label}, format="json").json()["id"]
    response = client.post(f"/api/v1/products/{product}/images/", {"image": [_file(p) for p in photos]},
                           format="multipart")
    assert response.status_code == 201, response.json()
    return [row["id"] for row in response.json()]


def _wait_embedded(ids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while ReferenceImage.unscoped.filter(pk__in=ids, status="pending").exists():
        assert time.monotonic() < deadline, "reference images still pending"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_reference_image_is_recognised_like_the_same_photo_uploaded(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "First"}, format="json")  # the default gallery is not the image's
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()["id"]
    images = {label: _upload(client, gallery, label, [product_photo(colour, (120, 160)), product_photo(colour, (140, 150))])
              for label, colour in COLOURS.items()}
    _wait_embedded([i for ids in images.values() for i in ids])
    query = images["Green Tea"][0]

    by_reference = client.post("/api/v1/recognitions/", {"reference_image": query, "top_k": 3}, format="json")
    assert by_reference.status_code == 200, by_reference.json()
    body = by_reference.json()
    assert body["status"] == "done" and body["gallery"] == gallery, body  # searched the image's own gallery
    best = body["objects"][0]
    assert best["label"] == "Green Tea"
    # documented: the reference finds itself first, then its neighbours
    assert best["matches"][0]["reference_image_id"] == query and best["matches"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert best["matches"][1]["label"] == "Green Tea"

    uploaded = client.post("/api/v1/recognitions/", {"image": _file(product_photo(COLOURS["Green Tea"], (120, 160))),
                                                     "gallery": gallery, "top_k": 3}, format="multipart").json()
    assert [(m["reference_image_id"], m["score"]) for m in uploaded["objects"][0]["matches"]] == \
        [(m["reference_image_id"], m["score"]) for m in best["matches"]]
    assert (body["image_width"], body["image_height"]) == (120, 160)


@pytest.mark.django_db
def test_another_tenants_reference_image_reads_as_a_missing_one(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: None)  # no embedding needed to refuse
    owner_b = tenant_b.key_client("member")
    b_gallery = owner_b.post("/api/v1/galleries/", {"name": "B shelf"}, format="json").json()["id"]
    b_image = _upload(owner_b, b_gallery, "b-cola", [product_photo((200, 40, 40))])[0]
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "A shelf"}, format="json")
    missing = max(ReferenceImage.unscoped.values_list("pk", flat=True)) + 1000

    foreign = client.post("/api/v1/recognitions/", {"reference_image": b_image}, format="json")
    absent = client.post("/api/v1/recognitions/", {"reference_image": missing}, format="json")

    assert foreign.status_code == absent.status_code == 400
    assert foreign.json()["error"]["code"] == absent.json()["error"]["code"] == "invalid_request"
    assert str(foreign.json()).replace(str(b_image), "ID") == str(absent.json()).replace(str(missing), "ID")
    assert not Recognition.unscoped.exists()


@pytest.mark.django_db
def test_exactly_one_photo_source(tenant_a, monkeypatch):
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: None)
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "G"}, format="json").json()["id"]
    image = _upload(client, gallery, "cola", [product_photo((200, 40, 40))])[0]
    both = client.post("/api/v1/recognitions/", {"reference_image": image, "image": _file(product_photo((1, 2, 3)))},
                       format="multipart")
    neither = client.post("/api/v1/recognitions/", {"gallery": gallery}, format="json")
    for response in (both, neither):
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
        assert "reference_image" in response.json()["error"]["details"]["image"][0]
    assert not Recognition.unscoped.exists()
