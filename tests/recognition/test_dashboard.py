"""Recognition dashboard pages: Try it, recognitions, pictures, the review queue; isolation and roles."""
from __future__ import annotations

import datetime
import hashlib
import io
import re
from dataclasses import dataclass

import pytest
from django.utils import timezone
from PIL import Image

from galleries.models import Gallery, Product, ReferenceImage
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key
from tests.support.images import product_photo, truncated_jpeg

RED, GREEN = (210, 30, 30), (40, 170, 60)


@dataclass
class Scene:
    """One tenant's gallery with two products, a recognition of a photo with two objects, and open reviews."""

    gallery: Gallery
    cola: Product
    tea: Product
    cola_image: ReferenceImage
    tea_image: ReferenceImage
    recognition: Recognition
    whole: DetectedObject
    shelf: DetectedObject
    review: MatchReview
    flagged: MatchReview


def _reference_image(world, gallery, product, data: bytes, bbox=None) -> ReferenceImage:
    checksum = hashlib.sha256(data).hexdigest()
    key = tenant_key(world.tenant.pk, "test-refs", checksum)
    object_store().put(key, data)
    reference_image = ReferenceImage(tenant=world.tenant, gallery=gallery, product=product, object_key=key, checksum=checksum,
                                     size_bytes=len(data), width=120, height=160, bbox=bbox, status=ReferenceImage.Status.READY)
    reference_image.save()
    return reference_image


def _match(product: Product, reference_image: ReferenceImage, score: float) -> dict:
    return {"product_id": product.pk, "label": product.label, "display_name": product.display_name, "score": score,
            "reference_image_id": reference_image.pk}


def _recognition(world, gallery, data: bytes, size=(400, 300)) -> Recognition:
    key = tenant_key(world.tenant.pk, "test-queries", f"{gallery.pk}-{hashlib.sha256(data).hexdigest()[:16]}")
    object_store().put(key, data)
    recognition = Recognition(
        tenant=world.tenant, gallery=gallery, image_key=key, image_width=size[0], image_height=size[1],
        params={"score_threshold": 0.5, "top_k": 5}, status=Recognition.Status.DONE, source="dashboard",
        timings_ms={"detect_ms": 12.5, "extract_ms": 30.1, "search_ms": 0.4, "total_ms": 44.0, "queue_ms": 3.2},
        finished_at=timezone.now(),
    )
    recognition.save()
    return recognition


def _scene(world) -> Scene:
    gallery = Gallery(tenant=world.tenant, name=f"Drinks of {world.tenant.name}")
    gallery.save()
    cola = Product(tenant=world.tenant, gallery=gallery, label="Red Cola", display_name="Red Cola 330 ml")
    cola.save()
    tea = Product(tenant=world.tenant, gallery=gallery, label="Green Tea")
    tea.save()
    cola_image = _reference_image(world, gallery, cola, product_photo(RED), bbox=[20, 20, 100, 140])
    tea_image = _reference_image(world, gallery, tea, product_photo(GREEN))
    photo = Image.new("RGB", (400, 300), (235, 235, 235))
    photo.paste(RED, (40, 40, 160, 260))
    photo.paste(GREEN, (240, 40, 360, 260))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    recognition = _recognition(world, gallery, buffer.getvalue())
    whole = DetectedObject(tenant=world.tenant, recognition=recognition, rank=0, bbox=[0, 0, 400, 300], whole_image=True,
                           det_score=1.0, product=cola, reference_image=cola_image, score=0.91, margin=0.01,
                           matches=[_match(cola, cola_image, 0.91), _match(tea, tea_image, 0.90)])
    whole.save()
    shelf = DetectedObject(tenant=world.tenant, recognition=recognition, rank=2, bbox=[240, 40, 360, 260], whole_image=False,
                           det_score=0.8, product=tea, reference_image=tea_image, score=0.75, margin=0.3,
                           matches=[_match(tea, tea_image, 0.75), _match(cola, cola_image, 0.45)])
    shelf.save()
    review = MatchReview(tenant=world.tenant, detected_object=whole, gallery=gallery, reason=MatchReview.Reason.LOW_MARGIN)
    review.save()
    flagged = MatchReview(tenant=world.tenant, detected_object=shelf, gallery=gallery, reason=MatchReview.Reason.FLAGGED,
                          verdict=MatchReview.Verdict.WRONG, suggested_product=cola, flagged_by="shopper")
    flagged.save()
    return Scene(gallery, cola, tea, cola_image, tea_image, recognition, whole, shelf, review, flagged)


def _jpeg_size(response) -> tuple[int, int]:
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content)).size


def _urls(scene: Scene) -> dict[str, str]:
    base = "/dashboard/recognition"
    public_id = scene.recognition.public_id
    return {
        "detail": f"{base}/{public_id}/",
        "image": f"{base}/{public_id}/image/",
        "crop": f"{base}/{public_id}/objects/1/crop/",
        "thumb": f"{base}/reference-images/{scene.cola_image.pk}/thumb/",
    }


# --- pages ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_try_it_page_lists_the_tenants_galleries_and_the_api_urls(tenant_a, tenant_b):
    scene = _scene(tenant_a)
    _scene(tenant_b)
    page = tenant_a.client("member").get("/dashboard/recognition/try/")
    html = page.content.decode()
    assert page.status_code == 200
    assert scene.gallery.name in html and "Bolt Drinks" not in html
    assert 'data-testid="photo-input"' in html and 'name="score_threshold"' in html and 'name="top_k"' in html
    assert '"api": "/api/v1/recognitions/"' in html and "/objects/{index}/crop/" in html
    assert "csrfmiddlewaretoken" in html and "shitu/tryit.js" in html


@pytest.mark.django_db
def test_try_it_is_read_only_for_viewers_and_explains_a_missing_gallery(tenant_a, tenant_b):
    _scene(tenant_a)
    viewer = tenant_a.client("viewer").get("/dashboard/recognition/try/").content.decode()
    assert 'data-testid="readonly-note"' in viewer and 'data-testid="photo-input"' not in viewer
    empty = tenant_b.client("member").get("/dashboard/recognition/try/").content.decode()
    assert 'data-testid="no-gallery"' in empty


@pytest.mark.django_db
def test_recognition_list_shows_status_gallery_counts_and_best_labels(tenant_a, tenant_b):
    scene = _scene(tenant_a)
    other = _scene(tenant_b)
    page = tenant_a.client("viewer").get("/dashboard/recognition/")
    html = page.content.decode()
    assert page.status_code == 200
    assert str(scene.recognition.public_id) in html and str(other.recognition.public_id) not in html
    row = re.search(r'data-testid="recognition-row">(.*?)</tr>', html, re.S).group(1)
    assert scene.gallery.name in row and ">2<" in row and "Red Cola" in row and "Green Tea" in row and "done" in row
    filtered = tenant_a.client("viewer").get("/dashboard/recognition/", {"status": "failed"}).content.decode()
    assert 'data-testid="recognition-row"' not in filtered


@pytest.mark.django_db
def test_recognition_detail_draws_every_stored_object(tenant_a):
    scene = _scene(tenant_a)
    html = tenant_a.client("member").get(_urls(scene)["detail"]).content.decode()
    assert html.count('data-testid="box"') == 2 and html.count('data-testid="object-card"') == 2
    # Boxes are placed in percent of the photo; the whole-photo candidate is drawn dashed ("whole").
    assert 'class="rec-box obj-c0 whole tag-inside" style="left:0.000%;top:0.000%;width:100.000%;height:100.000%"' in html
    assert "left:60.000%;top:13.333%;width:30.000%;height:73.333%" in html
    # Crops use the object's position in `objects` (ranks 0 and 2 here), as the feedback API does.
    assert f"/dashboard/recognition/{scene.recognition.public_id}/objects/1/crop/" in html
    assert f"/dashboard/recognition/reference-images/{scene.tea_image.pk}/thumb/" in html
    assert "extract</span> 30 ms" in html and 'data-testid="feedback"' in html
    assert f'data-feedback-url="/api/v1/recognitions/{scene.recognition.public_id}/feedback/"' in html
    assert "Flagged by a user: wrong product → Red Cola" in html


@pytest.mark.django_db
def test_viewers_see_recognitions_without_feedback_controls(tenant_a):
    scene = _scene(tenant_a)
    html = tenant_a.client("viewer").get(_urls(scene)["detail"]).content.decode()
    assert 'data-testid="object-card"' in html and 'data-testid="feedback"' not in html


@pytest.mark.django_db
def test_failed_recognition_shows_its_reason(tenant_a):
    scene = _scene(tenant_a)
    failed = _recognition(tenant_a, scene.gallery, product_photo((1, 2, 3)))
    Recognition.unscoped.filter(pk=failed.pk).update(status="failed", failure_code="model_not_found", failure_reason="no extractor installed")
    html = tenant_a.client("member").get(f"/dashboard/recognition/{failed.public_id}/").content.decode()
    assert "model_not_found" in html and "no extractor installed" in html and 'data-testid="box"' not in html


# --- pictures -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_pictures_are_scaled_jpegs(tenant_a):
    scene = _scene(tenant_a)
    client = tenant_a.client("viewer")
    urls = _urls(scene)
    assert _jpeg_size(client.get(urls["image"])) == (400, 300)
    assert max(_jpeg_size(client.get(urls["image"], {"size": "thumb"}))) == 240
    assert _jpeg_size(client.get(urls["crop"])) == (120, 220)  # the shelf object's box, below the 240-px limit
    assert _jpeg_size(client.get(urls["thumb"])) == (80, 120)  # the reference image cropped to its bbox
    assert client.get(f"/dashboard/recognition/{scene.recognition.public_id}/objects/2/crop/").status_code == 404


@pytest.mark.django_db
def test_undecodable_or_missing_stored_images_get_a_placeholder_not_an_error(tenant_a):
    scene = _scene(tenant_a)
    object_store().put(scene.recognition.image_key, truncated_jpeg())
    object_store().put(scene.cola_image.object_key, b"not an image at all")
    ReferenceImage.unscoped.filter(pk=scene.tea_image.pk).update(object_key=tenant_key(tenant_a.tenant.pk, "gone", "missing"))
    client = tenant_a.client("viewer")
    urls = _urls(scene)
    for url in [urls["image"], urls["crop"], urls["thumb"], f"/dashboard/recognition/reference-images/{scene.tea_image.pk}/thumb/"]:
        response = client.get(url)
        assert _jpeg_size(response) == (160, 160) and response["X-Shitu-Placeholder"] == "1", url
    DetectedObject.unscoped.filter(pk=scene.whole.pk).update(bbox=["left", "top", None, 1])
    assert client.get(urls["crop"].replace("/1/crop/", "/0/crop/"))["X-Shitu-Placeholder"] == "1"
    assert client.get(urls["detail"]).status_code == 200
    admin = tenant_a.client("admin")
    assert admin.get("/dashboard/recognition/review/").status_code == 200


@pytest.mark.django_db
def test_another_tenants_ids_are_404_everywhere(tenant_a, tenant_b):
    scene = _scene(tenant_a)
    _scene(tenant_b)
    intruder = tenant_b.client("owner")
    for name, url in _urls(scene).items():
        assert intruder.get(url).status_code == 404, name
    for action in ["confirm", "unknown", "relabel"]:
        response = intruder.post(f"/dashboard/recognition/review/{scene.review.pk}/{action}/", {"product": scene.tea.pk})
        assert response.status_code == 404, action
    bulk = intruder.post("/dashboard/recognition/review/confirm/", {"review": [scene.review.pk]})
    assert bulk.status_code == 404
    queue = intruder.get("/dashboard/recognition/review/").content.decode()
    assert f'data-review="{scene.review.pk}"' not in queue
    scene.review.refresh_from_db()
    assert scene.review.status == MatchReview.Status.OPEN


@pytest.mark.django_db
def test_logged_out_visitors_are_sent_to_log_in(tenant_a):
    from django.test import Client

    scene = _scene(tenant_a)
    for url in [*_urls(scene).values(), "/dashboard/recognition/try/", "/dashboard/recognition/review/"]:
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


# --- the review queue -----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_see_and_act_on_reviews(tenant_a, role):
    scene = _scene(tenant_a)
    client = tenant_a.client(role)
    assert client.get("/dashboard/recognition/review/").status_code == 403
    for action in ["confirm", "unknown", "relabel"]:
        assert client.post(f"/dashboard/recognition/review/{scene.review.pk}/{action}/", {"product": scene.tea.pk}).status_code == 403
    assert client.post("/dashboard/recognition/review/confirm/", {"review": [scene.review.pk]}).status_code == 403
    scene.review.refresh_from_db()
    assert scene.review.status == MatchReview.Status.OPEN


@pytest.mark.django_db
def test_review_queue_rows_show_pictures_prediction_runner_up_and_precision(tenant_a):
    scene = _scene(tenant_a)
    resolved = _scene_extra_confirmed(tenant_a, scene)
    html = tenant_a.client("admin").get("/dashboard/recognition/review/").content.decode()
    assert html.count('data-testid="review-row"') == 2
    row = re.search(rf'data-review="{scene.review.pk}">(.*?)</tr>', html, re.S).group(1)
    assert f"/dashboard/recognition/{scene.recognition.public_id}/objects/0/crop/" in row
    assert f"/dashboard/recognition/{scene.recognition.public_id}/image/?size=thumb" in row
    assert f"/dashboard/recognition/reference-images/{scene.cola_image.pk}/thumb/" in row  # the prediction's reference
    assert "Red Cola" in row and "Green Tea" in row and "0.910" in row and "0.010" in row and "Low margin" in row
    flagged = re.search(rf'data-review="{scene.flagged.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "/objects/1/crop/" in flagged and "wrong product" in flagged and "shopper" in flagged
    assert re.search(rf'<option value="{scene.cola.pk}" selected>Red Cola</option>', flagged)  # the user's suggestion
    precision = re.search(r'data-testid="precision-row".*?</tr>', html, re.S).group(0)
    assert "100.0%" in precision and resolved.status == MatchReview.Status.CONFIRMED


def _scene_extra_confirmed(world, scene: Scene) -> MatchReview:
    recognition = _recognition(world, scene.gallery, product_photo(GREEN, size=(200, 260)), size=(200, 260))
    detected = DetectedObject(tenant=world.tenant, recognition=recognition, rank=0, bbox=[0, 0, 200, 260], whole_image=True,
                              det_score=1, product=scene.tea, reference_image=scene.tea_image, score=0.95, margin=0.4,
                              matches=[_match(scene.tea, scene.tea_image, 0.95)])
    detected.save()
    review = MatchReview(tenant=world.tenant, detected_object=detected, gallery=scene.gallery, reason="flagged",
                         verdict="correct", status=MatchReview.Status.CONFIRMED)
    review.save()
    return review


@pytest.mark.django_db
def test_review_queue_filters(tenant_a):
    scene = _scene(tenant_a)
    client = tenant_a.client("admin")

    def shown(**params) -> set[int]:
        html = client.get("/dashboard/recognition/review/", params).content.decode()
        return {int(pk) for pk in re.findall(r'data-testid="review-row" data-review="(\d+)"', html)}

    both = {scene.review.pk, scene.flagged.pk}
    assert shown() == both
    assert shown(reason="flagged") == {scene.flagged.pk}
    assert shown(score="ge90") == {scene.review.pk} and shown(score="70-90") == {scene.flagged.pk} and shown(score="lt50") == set()
    assert shown(gallery=scene.gallery.pk) == both
    today = timezone.localdate()
    assert shown(since=today.isoformat()) == both
    assert shown(until=(today - datetime.timedelta(days=1)).isoformat()) == set()
    assert shown(since="not a date", gallery="999999") == both  # invalid filters are ignored, never a 500


@pytest.mark.django_db
def test_admin_confirms_marks_unknown_and_bulk_confirms(tenant_a):
    scene = _scene(tenant_a)
    admin = tenant_a.client("admin")
    response = admin.post(f"/dashboard/recognition/review/{scene.review.pk}/confirm/", {"query": "reason=low_margin&next=//evil"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/recognition/review/?reason=low_margin"
    scene.review.refresh_from_db()
    assert scene.review.status == "confirmed" and scene.review.resolved_product == scene.cola
    assert scene.review.reviewed_by == tenant_a.users["admin"]

    admin.post(f"/dashboard/recognition/review/{scene.flagged.pk}/unknown/")
    scene.flagged.refresh_from_db()
    assert scene.flagged.status == "unknown_product"
    page = admin.get("/dashboard/recognition/review/").content.decode()
    assert 'data-testid="queue-empty"' in page and "50.0%" in page  # one right, one wrong

    again = _scene_extra_open(tenant_a, scene)
    bulk = admin.post("/dashboard/recognition/review/confirm/", {"review": [again.pk, scene.review.pk]})
    assert bulk.status_code == 302
    again.refresh_from_db()
    assert again.status == "confirmed"
    assert "1 confirmed; 1 were already resolved." in admin.get("/dashboard/recognition/review/").content.decode()


def _scene_extra_open(world, scene: Scene) -> MatchReview:
    review = _scene_extra_confirmed(world, scene)
    MatchReview.unscoped.filter(pk=review.pk).update(status=MatchReview.Status.OPEN, verdict="")
    review.refresh_from_db()
    return review


@pytest.mark.django_db
def test_relabel_adds_the_crop_to_the_chosen_product(tenant_a, tenant_b, settings, monkeypatch):
    settings.SHITU_RECOGNITION_TIMEOUT = 0.1  # no worker here: do not wait for the embedding
    monkeypatch.setattr("galleries.services._enqueue_embedding", lambda ids, tenant_id: None)
    scene = _scene(tenant_a)
    foreign = _scene(tenant_b)
    admin = tenant_a.client("admin")
    assert admin.post(f"/dashboard/recognition/review/{scene.review.pk}/relabel/", {"product": foreign.tea.pk}).status_code == 404

    other_gallery = Gallery(tenant=tenant_a.tenant, name="Snacks")
    other_gallery.save()
    chips = Product(tenant=tenant_a.tenant, gallery=other_gallery, label="Chips")
    chips.save()
    refused = admin.post(f"/dashboard/recognition/review/{scene.review.pk}/relabel/", {"product": chips.pk}, follow=True)
    assert "Not relabelled" in refused.content.decode()
    assert admin.post(f"/dashboard/recognition/review/{scene.review.pk}/relabel/", {"product": ""}).status_code == 302
    scene.review.refresh_from_db()
    assert scene.review.status == "open"

    done = admin.post(f"/dashboard/recognition/review/{scene.review.pk}/relabel/", {"product": scene.tea.pk}, follow=True)
    assert "Relabelled to “Green Tea”" in done.content.decode()
    scene.review.refresh_from_db()
    assert scene.review.status == "relabelled" and scene.review.new_reference_image.product == scene.tea


@pytest.mark.django_db
def test_relabel_of_an_unreadable_query_photo_is_refused_politely(tenant_a, settings):
    settings.SHITU_RECOGNITION_TIMEOUT = 0.1
    scene = _scene(tenant_a)
    object_store().put(scene.recognition.image_key, truncated_jpeg())
    response = tenant_a.client("admin").post(f"/dashboard/recognition/review/{scene.review.pk}/relabel/", {"product": scene.tea.pk}, follow=True)
    assert response.status_code == 200 and "the query photo cannot be read" in response.content.decode()
    scene.review.refresh_from_db()
    assert scene.review.status == "open"


@pytest.mark.django_db
def test_acting_on_a_resolved_review_changes_nothing(tenant_a):
    scene = _scene(tenant_a)
    admin = tenant_a.client("admin")
    admin.post(f"/dashboard/recognition/review/{scene.review.pk}/unknown/")
    response = admin.post(f"/dashboard/recognition/review/{scene.review.pk}/confirm/", follow=True)
    assert "already resolved" in response.content.decode()
    scene.review.refresh_from_db()
    assert scene.review.status == "unknown_product"


@pytest.mark.django_db
def test_a_page_past_the_end_shows_the_last_page(tenant_a):
    _scene(tenant_a)
    response = tenant_a.client("admin").get("/dashboard/recognition/review/", {"page": "7"})
    assert response.status_code == 200 and response.content.decode().count('data-testid="review-row"') == 2


@pytest.mark.django_db
def test_queue_and_list_queries_do_not_grow_with_rows(tenant_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    scene = _scene(tenant_a)
    admin = tenant_a.client("admin")

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get(url).status_code == 200
        return len(captured)

    before = {url: queries(url) for url in ["/dashboard/recognition/review/", "/dashboard/recognition/"]}
    for _ in range(5):
        _scene_extra_open(tenant_a, scene)
    assert {url: queries(url) for url in before} == before
