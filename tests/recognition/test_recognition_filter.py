"""POST /api/v1/recognitions/ with `filter`: only matching products are searched (inside the search, so the top-k
are all matching products), the filter is kept on the recognition, and a malformed one is refused before any work."""
import io
import time

import pytest

from galleries.models import ReferenceImage
from recognition.models import Recognition
from tests.support.images import product_photo

PRODUCTS = {"Red Cola": ((210, 30, 30), {"brand": "Acme", "size": "1L"}),
            "Orange Soda": ((230, 140, 20), {"brand": "Acme", "size": "2L"}),
            "Green Tea": ((40, 170, 60), {"brand": "Leafy", "size": "1L"})}


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


@pytest.mark.slow
def test_a_filter_limits_the_answer_to_matching_products(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()["id"]
    uploaded = []
    for label, (colour, attributes) in PRODUCTS.items():
        product = client.post("/api/v1/products/", {"gallery": gallery, "label": label, "attributes": attributes},
                              format="json").json()["id"]
        response = client.post(f"/api/v1/products/{product}/images/",
                               {"image": [_file(product_photo(colour, (120, 160))), _file(product_photo(colour, (140, 150)))]},
                               format="multipart")
        uploaded += [row["id"] for row in response.json()]
    deadline = time.monotonic() + 60
    while ReferenceImage.objects.for_tenant(tenant_a.tenant).filter(pk__in=uploaded, status="pending").exists():
        assert time.monotonic() < deadline, "reference images still pending"
        time.sleep(0.2)

    def recognise(text: str) -> dict:
        response = client.post("/api/v1/recognitions/", {"image": _file(product_photo((40, 170, 60), (130, 150))),
                                                         "gallery": gallery, "top_k": 10, "filter": text},
                               format="multipart")
        assert response.status_code == 200, response.json()
        return response.json()

    plain, acme, leafy = recognise(""), recognise("brand=Acme  AND (size=1L OR size=2L)"), recognise("brand=Leafy")

    assert plain["objects"][0]["label"] == "Green Tea" and plain["filter"] == ""
    assert acme["filter"] == "brand=Acme AND (size=1L OR size=2L)"  # kept, in its normal form
    acme_labels = {m["label"] for obj in acme["objects"] for m in obj["matches"]}
    assert acme_labels and acme_labels <= {"Red Cola", "Orange Soda"}
    assert len(acme["objects"][0]["matches"]) == 4  # top-k filled with matching products, not emptied by the filter
    assert {m["label"] for obj in leafy["objects"] for m in obj["matches"]} == {"Green Tea"}


@pytest.mark.django_db
@pytest.mark.parametrize("text, where", [("brand=Acme OR size=1L", "character 12"), ("brand=(Acme", "character 1")])
def test_a_malformed_filter_is_refused_before_anything_is_stored(tenant_a, text, where):
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json")

    response = client.post("/api/v1/recognitions/", {"image": _file(product_photo((40, 170, 60))), "filter": text},
                           format="multipart")

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "invalid_filter"
    assert where in response.json()["error"]["message"]
    assert not Recognition.objects.for_tenant(tenant_a.tenant).exists()
