"""The API quirks a new mobile developer tripped over, each pinned: counts on create, rounded timings, idempotent
feedback, a clear answer to a malformed key, plain numbers in size errors, and which matches are the answer."""
from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from galleries.models import Gallery, Product, ReferenceImage
from recognition.engine.errors import ImageTooLarge
from recognition.engine.imageio import load_image
from recognition.models import DetectedObject, MatchReview, Recognition
from recognition.reviews import review_confirm
from tests.security.conftest import upload

pytestmark = pytest.mark.django_db


# --- POST /galleries/ and /products/ answer with the counts the lists have -------------------------------------

def test_created_gallery_and_product_carry_the_lists_counts(tenant_a):
    client = tenant_a.key_client("member")
    created = client.post("/api/v1/galleries/", {"name": "drinks"}, format="json")
    assert created.status_code == 201
    listed = client.get("/api/v1/galleries/").json()["results"][0]
    assert set(created.json()) == set(listed)
    assert created.json()["product_count"] == 0 and created.json()["image_count"] == 0
    product = client.post("/api/v1/products/", {"gallery": created.json()["id"], "label": "cola"}, format="json")
    assert product.status_code == 201 and product.json()["image_count"] == 0
    assert set(product.json()) == set(client.get("/api/v1/products/").json()["results"][0])


# --- a recognition's timings and matches --------------------------------------------------------------------------

def _recognition(world, *, timings: dict | None = None, status: str = Recognition.Status.DONE) -> Recognition:
    """A finished recognition of one object: best match A, then B (another product), then A's second photo."""
    tenant = world.tenant
    gallery = Gallery.objects.create(tenant=tenant, name=f"g-{uuid.uuid4().hex[:6]}")
    products = [Product.objects.create(tenant=tenant, gallery=gallery, label=label) for label in ("Cola", "Lemonade")]
    images = [ReferenceImage.objects.create(tenant=tenant, gallery=gallery, product=product, object_key=f"k/{i}",
                                            checksum=f"{i}" * 64, size_bytes=1, status="ready")
              for i, product in enumerate([products[0], products[1], products[0]])]
    recognition = Recognition.objects.create(tenant=tenant, gallery=gallery, image_key="k/q", image_width=64,
                                             image_height=80, status=status, timings_ms=timings or {})
    matches = [{"product_id": image.product_id, "label": image.product.label, "display_name": "", "score": score,
                "reference_image_id": image.pk, "inliers": None} for image, score in zip(images, (0.91, 0.62, 0.35))]
    DetectedObject.objects.create(tenant=tenant, recognition=recognition, rank=0, bbox=[0, 0, 64, 80], whole_image=True,
                                  det_score=1.0, product=products[0], reference_image=images[0], score=0.91,
                                  confidence=0.97, matches=matches)
    return recognition


def test_timings_are_all_rounded_to_one_decimal(tenant_a):
    raw = {"detect_ms": 599.5397360002244, "extract_ms": 63.0, "search_ms": 0.41999, "verify_ms": 12.345678,
           "total_ms": 675.3, "queue_ms": 4.2, "search_source": "faiss"}
    recognition = _recognition(tenant_a, timings=raw)
    timings = tenant_a.key_client("viewer").get(f"/api/v1/recognitions/{recognition.public_id}/").json()["timings_ms"]
    assert timings == {"detect_ms": 599.5, "extract_ms": 63.0, "search_ms": 0.4, "verify_ms": 12.3, "total_ms": 675.3,
                       "queue_ms": 4.2, "search_source": "faiss"}


def test_a_queued_recognition_does_not_leak_the_enqueue_clock(tenant_a):
    recognition = _recognition(tenant_a, timings={"queued_at": 1767225600.123456}, status=Recognition.Status.QUEUED)
    body = tenant_a.key_client("viewer").get(f"/api/v1/recognitions/{recognition.public_id}/").json()
    assert body["timings_ms"] == {}


def test_each_match_says_whether_it_is_the_answer(tenant_a):
    recognition = _recognition(tenant_a)
    body = tenant_a.key_client("viewer").get(f"/api/v1/recognitions/{recognition.public_id}/").json()
    matches = body["objects"][0]["matches"]
    assert [(m["label"], m["accepted"]) for m in matches] == [("Cola", True), ("Lemonade", False), ("Cola", True)]
    assert body["objects"][0]["label"] == "Cola" and body["no_match"] is False


# --- feedback is idempotent ---------------------------------------------------------------------------------------

def test_the_same_feedback_twice_makes_one_review_and_answers_200(tenant_a):
    recognition = _recognition(tenant_a)
    client = tenant_a.key_client("member")
    url = f"/api/v1/recognitions/{recognition.public_id}/feedback/"
    lemonade = Product.unscoped.get(gallery=recognition.gallery, label="Lemonade").pk
    first = client.post(url, {"object": 0, "verdict": "wrong", "product": lemonade}, format="json")
    again = client.post(url, {"object": 0, "verdict": "wrong", "product": lemonade}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert MatchReview.objects.for_tenant(tenant_a.tenant).count() == 1

    changed = client.post(url, {"object": 0, "verdict": "correct"}, format="json")
    assert changed.status_code == 200 and changed.json()["id"] == first.json()["id"]
    assert changed.json()["verdict"] == "correct" and changed.json()["status"] == "confirmed"
    assert MatchReview.objects.for_tenant(tenant_a.tenant).count() == 1


def test_a_resent_feedback_leaves_a_staff_decision_standing(tenant_a):
    recognition = _recognition(tenant_a)
    client = tenant_a.key_client("member")
    url = f"/api/v1/recognitions/{recognition.public_id}/feedback/"
    first = client.post(url, {"object": 0, "verdict": "not_in_catalogue"}, format="json")
    staff = get_user_model().objects.create_user("staff", password="x-password-123", is_staff=True)
    review_confirm(review=MatchReview.unscoped.get(pk=first.json()["id"]), reviewer=staff)
    again = client.post(url, {"object": 0, "verdict": "not_in_catalogue"}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "confirmed"


def test_feedback_on_a_low_margin_review_is_the_users_first(tenant_a):
    recognition = _recognition(tenant_a)
    detected = recognition.detected_objects.get()
    MatchReview.objects.create(tenant=tenant_a.tenant, detected_object=detected, gallery=recognition.gallery,
                               reason=MatchReview.Reason.LOW_MARGIN)
    response = tenant_a.key_client("member").post(f"/api/v1/recognitions/{recognition.public_id}/feedback/",
                                                  {"object": 0, "verdict": "correct"}, format="json")
    assert response.status_code == 201 and response.json()["reason"] == "flagged"


# --- a malformed key is an invalid key, not missing credentials ---------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"HTTP_AUTHORIZATION": "Api-Key not-a-key"},
    {"HTTP_AUTHORIZATION": "Api-Key "},
    {"HTTP_AUTHORIZATION": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"},
    {"HTTP_X_API_KEY": ""},
    {"HTTP_X_API_KEY": "12345"},
])
def test_a_malformed_key_is_401_invalid_api_key(db, headers):
    response = APIClient().get("/api/v1/tenant/", **headers)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Api-Key"
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert error["message"].startswith("Invalid") and "API key" in error["message"]
    assert "not provided" not in error["message"]


def test_a_gateway_token_in_authorization_does_not_hide_a_good_x_api_key(tenant_a):
    headers = {"HTTP_AUTHORIZATION": "Bearer gateway-token", "HTTP_X_API_KEY": tenant_a.api_key("viewer")}
    assert APIClient().get("/api/v1/tenant/", **headers).status_code == 200


def test_other_schemes_are_not_taken_for_a_key(db):
    response = APIClient().get("/api/v1/tenant/", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


# --- size errors in plain numbers ---------------------------------------------------------------------------------

def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height,shown", [(100_000, 100_000, "10000 Mpx"), (4_100, 3_011, "12.3 Mpx"),
                                                (9_000, 9_000, "81 Mpx")])
def test_pixel_limit_message_uses_plain_numbers(width, height, shown):
    with pytest.raises(ImageTooLarge) as caught:
        load_image(_png_declaring(width, height), max_pixels=10_000_000)
    assert str(caught.value) == f"image is {width}x{height} = {shown}, limit 10 Mpx"


def test_the_api_size_error_reads_in_plain_numbers(tenant_a):
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "drinks"}, format="json")
    response = client.post("/api/v1/recognitions/", {"image": upload(_png_declaring(100_000, 100_000), "huge.png")},
                           format="multipart")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_too_large" and "e+" not in error["message"]
    assert error["message"] == "image is 100000x100000 = 10000 Mpx, limit 40 Mpx"
