"""Feedback and the admin review loop: a relabelled wrong match is answered right on the next request."""
import io
import time

import pytest
from django.contrib.auth import get_user_model

from galleries.models import Product, ReferenceImage
from recognition.models import MatchReview, Recognition
from tests.support.images import product_photo

COLOURS = {"Red Cola": (210, 30, 30), "Green Tea": (40, 170, 60), "Blue Water": (30, 70, 200)}
ORANGE_PHOTO = product_photo((235, 120, 25), size=(200, 260))


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _wait(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _gallery(client):
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()["id"]
    for label, colour in COLOURS.items():
        product = client.post("/api/v1/products/", {"gallery": gallery, "label": label}, format="json").json()["id"]
        client.post(f"/api/v1/products/{product}/images/", {"image": [_file(product_photo(colour))]}, format="multipart")
    orange = client.post("/api/v1/products/", {"gallery": gallery, "label": "Orange Juice"}, format="json").json()["id"]
    _wait(lambda: not ReferenceImage.unscoped.filter(status="pending").exists())
    return gallery, orange


def _recognise(client, data):
    return client.post("/api/v1/recognitions/", {"image": _file(data), "score_threshold": 0.0}, format="multipart").json()


@pytest.mark.slow
def test_relabel_in_admin_fixes_the_next_answer(tenant_a, celery_workers):
    celery_workers.start("reviews", {"SHITU_REVIEW_MARGIN": "1.0"})  # every match with a runner-up is queued for review
    client = tenant_a.key_client("member")
    _, orange = _gallery(client)
    first = _recognise(client, ORANGE_PHOTO)
    assert first["objects"][0]["label"] != "Orange Juice"
    assert MatchReview.unscoped.filter(reason="low_margin").exists()

    flagged = client.post(f"{first['url']}feedback/", {"object": 0, "verdict": "wrong", "product": orange}, format="json")
    assert flagged.status_code == 201 and flagged.json()["status"] == "open" and flagged.json()["reason"] == "flagged"

    staff = get_user_model().objects.create_superuser("staff", password="staff-password-1")
    from django.test import Client

    admin = Client()
    admin.force_login(staff)
    review = MatchReview.unscoped.get(pk=flagged.json()["id"])
    listing = admin.get("/admin/recognition/matchreview/")
    assert listing.status_code == 200 and f"/admin/recognition/matchreview/{review.pk}/picture/crop.jpg" in listing.content.decode()
    picture = admin.get(f"/admin/recognition/matchreview/{review.pk}/picture/crop.jpg")
    assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"
    saved = admin.post(f"/admin/recognition/matchreview/{review.pk}/change/", {"relabel_to": orange})
    assert saved.status_code == 302
    review.refresh_from_db()
    assert review.status == "relabelled" and review.new_reference_image.product_id == orange

    again = _recognise(client, ORANGE_PHOTO)
    assert again["objects"][0]["label"] == "Orange Juice"
    assert again["objects"][0]["score"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_feedback_validation_and_isolation(tenant_a, tenant_b, celery_worker):
    client = tenant_a.key_client("member")
    _, orange = _gallery(client)
    result = _recognise(client, product_photo((210, 30, 30)))
    url = f"{result['url']}feedback/"
    assert client.post(url, {"object": 0, "verdict": "wrong"}, format="json").json()["error"]["code"] == "invalid_feedback"
    assert client.post(url, {"object": 9, "verdict": "correct"}, format="json").json()["error"]["code"] == "invalid_feedback"
    ok = client.post(url, {"object": 0, "verdict": "correct"}, format="json")
    assert ok.status_code == 201 and ok.json()["status"] == "confirmed"
    other = tenant_b.key_client("owner")
    assert other.post(url, {"object": 0, "verdict": "correct"}, format="json").status_code == 404
    b_gallery = other.post("/api/v1/galleries/", {"name": "B"}, format="json").json()["id"]
    b_product = other.post("/api/v1/products/", {"gallery": b_gallery, "label": "b"}, format="json").json()["id"]
    foreign = client.post(url, {"object": 0, "verdict": "wrong", "product": b_product}, format="json")
    assert foreign.status_code == 400


@pytest.mark.django_db
def test_staff_who_are_not_superusers_see_only_their_tenants_reviews(tenant_a, tenant_b):
    from django.contrib.auth.models import Permission
    from django.test import Client

    from galleries.models import Gallery
    from recognition.models import DetectedObject

    def review_in(world):
        gallery = Gallery(tenant=world.tenant, name="g")
        gallery.save()
        recognition = Recognition(tenant=world.tenant, gallery=gallery, image_key="k", image_width=10, image_height=10)
        recognition.save()
        detected = DetectedObject(tenant=world.tenant, recognition=recognition, rank=0, bbox=[0, 0, 10, 10], det_score=1, score=0.5)
        detected.save()
        review = MatchReview(tenant=world.tenant, detected_object=detected, gallery=gallery, reason="flagged")
        review.save()
        return review

    review_a, review_b = review_in(tenant_a), review_in(tenant_b)
    staff = tenant_a.users["admin"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_matchreview", "change_matchreview"]))
    client = Client()
    client.force_login(staff)
    assert client.get(f"/admin/recognition/matchreview/{review_a.pk}/change/").status_code == 200
    assert client.get(f"/admin/recognition/matchreview/{review_b.pk}/change/").status_code == 302  # "does not exist" redirect
    assert client.get(f"/admin/recognition/matchreview/{review_b.pk}/picture/crop.jpg").status_code == 404
