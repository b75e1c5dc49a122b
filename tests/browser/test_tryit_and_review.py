"""In Chromium with a real worker: try photos, flag a wrong answer, relabel it in the review queue, see it fixed."""
import io
import time

import pytest
from PIL import Image

from galleries.models import ReferenceImage
from recognition.models import DetectedObject, MatchReview
from tests.engine.test_verify import textured_image, warped_into_scene
from tests.support.images import encoded, product_photo, truncated_jpeg
from tests.support.browser import log_in, wait_for_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COLOURS = {"Red Cola": (210, 30, 30), "Green Tea": (40, 170, 60), "Blue Water": (30, 70, 200)}
RED_PHOTO = product_photo((222, 40, 36), size=(300, 400))
ORANGE_PHOTO = product_photo((235, 120, 25), size=(300, 400))
# A printed packet: busy artwork whose keypoints verify a photo of it taken at an angle on another backdrop.
CRISPS_ARTWORK = textured_image(1)
CRISPS_PHOTO = encoded(Image.fromarray(warped_into_scene(CRISPS_ARTWORK)), "JPEG", quality=92)


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _gallery_of_colour_products(world) -> None:
    """Three products with two photos each and a printed packet with one (embedded by the worker), and an
    "Orange Juice" with none yet."""
    client = world.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks aisle"}, format="json").json()["id"]
    for label, colour in COLOURS.items():
        product = client.post("/api/v1/products/", {"gallery": gallery, "label": label}, format="json").json()["id"]
        for size in [(120, 160), (140, 150)]:
            client.post(f"/api/v1/products/{product}/images/", {"image": [_file(product_photo(colour, size))]}, format="multipart")
    crisps = client.post("/api/v1/products/", {"gallery": gallery, "label": "Printed Crisps"}, format="json").json()["id"]
    client.post(f"/api/v1/products/{crisps}/images/", {"image": [_file(encoded(Image.fromarray(CRISPS_ARTWORK), "JPEG", quality=92))]},
                format="multipart")
    client.post("/api/v1/products/", {"gallery": gallery, "label": "Orange Juice"}, format="json")
    deadline = time.monotonic() + 90
    while ReferenceImage.unscoped.filter(status="pending").exists():
        assert time.monotonic() < deadline, "reference images were not embedded"
        time.sleep(0.2)
    assert ReferenceImage.unscoped.filter(status="ready").count() == 7


def _wait_for_evidence(page, card) -> None:
    """The card's matched-keypoint picture has loaded and is wider than tall (the crop beside its reference)."""
    evidence = card.locator("[data-testid=evidence] img")
    evidence.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=evidence.element_handle())
    width, height = evidence.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    assert width > 1.5 * height, (width, height)


def _try(page, name: str, data: bytes, score_threshold: str = "0.5"):
    page.fill("[data-testid=score-threshold]", score_threshold)
    page.set_input_files("[data-testid=photo-input]", files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
    page.wait_for_function(
        "name => (document.querySelector('[data-testid=result-title]') || {}).textContent?.includes(name)"
        " && document.querySelector('[data-testid=busy]').hidden",
        arg=name, timeout=60_000,
    )
    wait_for_images(page, "#rec-result img")


@pytest.mark.slow
def test_try_flag_relabel_and_try_again(page, live_server, tenant_a, celery_worker, screenshot):
    _gallery_of_colour_products(tenant_a)
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/recognition/try/")
    assert page.inner_text("[data-testid=page-title]") == "Try it"
    screenshot("tryit-01-empty")

    # A file cut off half-way gets a readable error, not a stack trace.
    page.set_input_files("[data-testid=photo-input]", files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": truncated_jpeg()}])
    page.wait_for_selector("[data-testid=error]:not([hidden])")
    error = page.inner_text("[data-testid=error]")
    assert "cut off" in error and "truncated_image" in error
    screenshot("tryit-02-truncated-file")

    # A red can: one box (the whole-photo candidate, dashed) labelled Red Cola, with crop, references and timings.
    _try(page, "red-can.jpg", RED_PHOTO)
    assert page.is_hidden("[data-testid=error]")
    assert page.locator("[data-testid=box]").count() >= 1
    assert page.inner_text("[data-testid=object-label] >> nth=0") == "Red Cola"
    assert "Red Cola" in page.inner_text("[data-testid=box] >> nth=0")
    assert "round trip" in page.inner_text("[data-testid=timings]") and "extract" in page.inner_text("[data-testid=timings]")
    assert page.locator("[data-testid=object-card] >> nth=0 >> .rec-matches img").count() >= 2
    screenshot("tryit-03-red-can")

    page.click("[data-testid=object-card] >> nth=0 >> button[data-verdict=correct]")
    page.wait_for_selector("[data-testid=feedback-status] >> text=confirmed as Red Cola")
    assert page.locator("[data-testid=evidence]").count() == 0  # a plain colour block has no keypoints to match

    # A printed packet photographed at an angle: verified by its keypoints, drawn as lines to its reference image.
    _try(page, "crisps.jpg", CRISPS_PHOTO)
    card = page.locator("[data-testid=object-card]").first
    assert card.locator("[data-testid=object-label]").inner_text() == "Printed Crisps"
    _wait_for_evidence(page, card)
    assert "keypoints of the photo (left) agree with the reference image of Printed Crisps" in card.inner_text()
    assert "verified:" in card.locator(".rec-figures").inner_text()
    card.scroll_into_view_if_needed()
    screenshot("tryit-08-matched-keypoints")

    # An orange carton is not in the gallery yet: the best match is some other product. Say which is right.
    _try(page, "orange-carton.jpg", ORANGE_PHOTO, score_threshold="0")
    wrong_label = page.inner_text("[data-testid=object-label] >> nth=0")
    assert wrong_label != "Orange Juice"
    first_card = page.locator("[data-testid=object-card]").first
    first_card.locator("button[data-verdict=wrong]").click()
    first_card.locator("[data-testid=right-product] option", has_text="Orange Juice").wait_for(state="attached")
    first_card.locator("[data-testid=right-product]").select_option(label="Orange Juice")
    screenshot("tryit-04-wrong-picker")
    first_card.locator("[data-action=send-wrong]").click()
    page.wait_for_selector("[data-testid=feedback-status] >> text=Flagged: this is Orange Juice")
    flagged = MatchReview.unscoped.get(reason="flagged", status="open")
    assert flagged.suggested_product.label == "Orange Juice"
    screenshot("tryit-05-flagged")

    # Members cannot open the review queue; an admin can.
    assert page.goto(f"{live_server.url}/dashboard/recognition/review/").status == 403
    page.goto(f"{live_server.url}/dashboard/")
    page.click("text=Log out")
    log_in(page, live_server.url, tenant_a.users["admin"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/recognition/review/")
    row = page.locator(f"[data-testid=review-row][data-review='{flagged.pk}']")
    assert wrong_label in row.locator("[data-testid=predicted]").inner_text()
    assert "wrong product → Orange Juice" in row.inner_text()
    assert row.locator("[data-testid=relabel-product]").evaluate("select => select.selectedOptions[0].textContent") == "Orange Juice"
    wait_for_images(page, "[data-testid=review-table] img")
    screenshot("review-01-queue")

    row.locator("[data-testid=relabel]").click()
    page.wait_for_selector(".flash-success >> text=Relabelled to “Orange Juice”")
    assert page.locator(f"[data-testid=review-row][data-review='{flagged.pk}']").count() == 0
    flagged.refresh_from_db()
    assert flagged.status == "relabelled" and flagged.new_reference_image.status == "ready"
    assert page.locator("[data-testid=precision-row]").count() == 1
    screenshot("review-02-relabelled")

    # The same photo again: the crop is now a reference image of Orange Juice.
    page.goto(f"{live_server.url}/dashboard/recognition/try/")
    _try(page, "orange-carton-again.jpg", ORANGE_PHOTO)
    assert page.inner_text("[data-testid=object-label] >> nth=0") == "Orange Juice"
    assert page.inner_text("[data-testid=object-card] >> nth=0 >> .rec-score") == "1.000"
    screenshot("tryit-06-fixed")

    # Every try is listed; the detail page draws the stored answer.
    page.goto(f"{live_server.url}/dashboard/recognition/")
    assert page.locator("[data-testid=recognition-row]").count() == 4  # the truncated file was refused before storing
    wait_for_images(page, "[data-testid=recognition-table] img")
    screenshot("recognitions-01-list")
    page.click("[data-testid=recognition-row] >> nth=0 >> a >> nth=1")
    page.wait_for_selector("[data-testid=stage]")
    assert page.inner_text("[data-testid=object-label] >> nth=0") == "Orange Juice"
    wait_for_images(page, "[data-testid=result] img")
    screenshot("recognitions-02-detail")

    # The printed packet's page draws the same matched keypoints from the stored recognition.
    page.goto(f"{live_server.url}/dashboard/recognition/")
    page.click("[data-testid=recognition-row] >> nth=2 >> a >> nth=1")
    page.wait_for_selector("[data-testid=stage]")
    card = page.locator("[data-testid=object-card]").first
    assert card.locator("[data-testid=object-label]").inner_text() == "Printed Crisps"
    _wait_for_evidence(page, card)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("recognitions-04-matched-keypoints")

    # Platform staff reviewing that object in the Django admin see the same picture.
    from django.contrib.auth import get_user_model

    verified = DetectedObject.unscoped.get(evidence__isnull=False)
    review = MatchReview(tenant=verified.tenant, detected_object=verified, gallery=verified.recognition.gallery,
                         reason=MatchReview.Reason.LOW_MARGIN)
    review.save()
    get_user_model().objects.create_superuser("staff", password=tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/")
    page.click("text=Log out")
    log_in(page, live_server.url, "staff", tenant_a.password, wait=False)
    page.goto(f"{live_server.url}/admin/recognition/matchreview/{review.pk}/change/")
    evidence = page.locator("img[alt=evidence]")
    evidence.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=evidence.element_handle())
    assert "keypoints agree" in page.inner_text("body")
    screenshot("admin-01-matched-keypoints")


def _shelf_scene(world):
    """A stored recognition of a shelf photo with three detected cans and the whole-photo candidate (no worker needed)."""
    import hashlib

    from PIL import Image

    from galleries.models import Gallery, Product
    from recognition.models import DetectedObject, Recognition
    from shitu_platform.object_store import object_store
    from shitu_platform.storage import tenant_key

    gallery = Gallery(tenant=world.tenant, name="Drinks aisle")
    gallery.save()
    shelf = Image.new("RGB", (640, 420), (232, 228, 220))
    boxes, matches = [], []
    for index, (label, colour) in enumerate(COLOURS.items()):
        product = Product(tenant=world.tenant, gallery=gallery, label=label)
        product.save()
        data = product_photo(colour)
        checksum = hashlib.sha256(data).hexdigest()
        key = tenant_key(world.tenant.pk, "refs", checksum)
        object_store().put(key, data)
        reference_image = ReferenceImage(tenant=world.tenant, gallery=gallery, product=product, object_key=key, checksum=checksum,
                                         size_bytes=len(data), status="ready")
        reference_image.save()
        left = 50 + index * 200
        shelf.paste(colour, (left, 90, left + 140, 380))
        shelf.paste((250, 250, 250), (left, 200, left + 140, 250))
        boxes.append([left - 6, 84, left + 146, 386])
        matches.append({"product_id": product.pk, "label": label, "display_name": "", "score": 0.0, "reference_image_id": reference_image.pk})
    buffer = io.BytesIO()
    shelf.save(buffer, "JPEG", quality=90)
    key = tenant_key(world.tenant.pk, "queries", "shelf")
    object_store().put(key, buffer.getvalue())
    recognition = Recognition(tenant=world.tenant, gallery=gallery, image_key=key, image_width=640, image_height=420, status="done",
                              params={"score_threshold": 0.5, "top_k": 3}, source="dashboard",
                              timings_ms={"queue_ms": 4.0, "detect_ms": 41.0, "extract_ms": 63.5, "search_ms": 0.6, "total_ms": 105.1})
    recognition.save()
    scores = [0.97, 0.91, 0.88]
    for rank, (box, best, score) in enumerate(zip(boxes, matches, scores)):
        ranked = [dict(best, score=score)] + [dict(m, score=round(score - 0.3 - 0.05 * i, 3)) for i, m in enumerate(matches) if m is not best]
        DetectedObject(tenant=world.tenant, recognition=recognition, rank=rank, bbox=box, det_score=0.9 - rank * 0.1,
                       product_id=best["product_id"], reference_image_id=best["reference_image_id"], score=score,
                       margin=0.3, matches=ranked).save()
    DetectedObject(tenant=world.tenant, recognition=recognition, rank=3, bbox=[0, 0, 640, 420], whole_image=True, det_score=1.0,
                   product_id=matches[0]["product_id"], reference_image_id=matches[0]["reference_image_id"], score=0.62,
                   margin=0.01, matches=[dict(matches[0], score=0.62), dict(matches[1], score=0.61)]).save()
    return recognition


def test_several_objects_get_their_own_colours_on_the_page_and_in_try_it(page, live_server, tenant_a, screenshot):
    import json

    from recognition.serializers import RecognitionSerializer

    recognition = _shelf_scene(tenant_a)
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/recognition/{recognition.public_id}/")
    wait_for_images(page, "[data-testid=result] img")
    server_boxes = page.eval_on_selector_all("[data-testid=box]", "boxes => boxes.map(b => [b.className, b.innerText])")
    assert [c for c, _ in server_boxes] == ["rec-box obj-c0", "rec-box obj-c1", "rec-box obj-c2", "rec-box obj-c3 whole tag-inside"]
    assert [t.split(" · ")[1] for _, t in server_boxes][:3] == ["Red Cola 0.97", "Green Tea 0.91", "Blue Water 0.88"]
    styles = page.eval_on_selector_all("[data-testid=box]", "boxes => boxes.map(b => getComputedStyle(b).borderTopStyle)")
    assert styles == ["solid", "solid", "solid", "dashed"]
    # Feedback works on the stored page too: the second object is confirmed.
    second = page.locator("[data-testid=object-card]").nth(1)
    second.locator("button[data-verdict=correct]").click()
    second.locator("[data-testid=feedback-status] >> text=confirmed as Green Tea").wait_for()
    assert MatchReview.unscoped.get(detected_object__rank=1).status == "confirmed"
    page.evaluate("window.scrollTo(0, 0)")  # the photo column is sticky: show it at the top
    screenshot("recognitions-03-shelf-detail")

    # Try it draws the same from the API's JSON; here the API first answers 202 and the page polls the result.
    body = json.loads(json.dumps(RecognitionSerializer(recognition).data, default=str))

    def answer_later(route):
        if route.request.method == "POST":
            route.fulfill(status=202, content_type="application/json", headers={"Location": body["url"]},
                          body=json.dumps({"id": body["id"], "url": body["url"], "status": "queued", "objects": []}))
        else:
            route.continue_()

    page.route("**/api/v1/recognitions/", answer_later)
    page.goto(f"{live_server.url}/dashboard/recognition/try/")
    _try(page, "shelf.jpg", product_photo((1, 2, 3)))
    drawn = page.eval_on_selector_all("#rec-result [data-testid=box]", "boxes => boxes.map(b => [b.className, b.getAttribute('style')])")
    assert [c for c, _ in drawn] == [c for c, _ in server_boxes]  # the script draws what the server renders
    assert drawn[0][1] == "left:6.875%;top:20.000%;width:23.750%;height:71.905%"
    assert page.locator("#rec-result [data-testid=object-card]").count() == 4
    assert page.inner_text("[data-testid=result-title]") == "4 objects in shelf.jpg"
    screenshot("tryit-07-shelf")
