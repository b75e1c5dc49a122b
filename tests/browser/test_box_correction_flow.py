"""A member corrects a reference image's product box in Chromium: the card shows the box in use, the editor draws a
new one by dragging, a real worker re-embeds the image, and the new box sits exactly on the photo after a reload."""
import time

import pytest
from PIL import Image, ImageDraw

from galleries.models import Embedding, Gallery, Product, ReferenceImage
from galleries.services import reference_image_upload
from tests.support.browser import log_in, wait_for_images
from tests.support.images import encoded

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDE, TALL = (640, 480), (300, 400)
DRAG_FROM, DRAG_TO = (220, 110), (420, 370)  # the red can of the wide photo, in its pixels


def shelf_photo() -> bytes:
    """A red can among neighbours on a shelf: a photo whose whole frame is not the product."""
    scene = Image.new("RGB", WIDE, (96, 92, 86))
    draw = ImageDraw.Draw(scene)
    draw.rectangle([0, 380, 640, 480], fill=(150, 120, 90))
    draw.rounded_rectangle([40, 150, 190, 380], radius=18, fill=(40, 110, 200))
    draw.rounded_rectangle([450, 140, 600, 380], radius=18, fill=(60, 160, 70))
    draw.rounded_rectangle([220, 110, 420, 370], radius=22, fill=(200, 30, 40), outline=(40, 20, 20), width=3)
    draw.rectangle([220, 200, 420, 260], fill=(250, 250, 250))
    draw.text((262, 214), "COLA", fill=(200, 30, 40), font_size=30)
    return encoded(scene, "JPEG", quality=90)


def close_up() -> bytes:
    image = Image.new("RGB", TALL, (238, 236, 230))
    ImageDraw.Draw(image).rounded_rectangle([60, 40, 240, 360], radius=24, fill=(200, 30, 40))
    return encoded(image, "JPEG", quality=90)


def wait_until_ready(image_ids, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while ReferenceImage.unscoped.filter(pk__in=image_ids, status=ReferenceImage.Status.READY).count() < len(image_ids):
        assert time.monotonic() < deadline, "the worker did not embed the uploads"
        time.sleep(0.3)


def rect(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None
    return box


def test_draw_save_and_see_the_corrected_box(page, live_server, celery_worker, tenant_a, screenshot):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Drinks aisle")
    product = Product.objects.create(tenant=tenant_a.tenant, gallery=gallery, label="Cola 330 ml")
    shelf = reference_image_upload(product=product, data=shelf_photo()).reference_image
    close = reference_image_upload(product=product, data=close_up()).reference_image
    wait_until_ready([shelf.pk, close.pk])  # the worker embeds uploads

    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/galleries/products/{product.pk}/")
    wait_for_images(page, "[data-testid=image-card] img")
    card = page.locator(f"[data-image-id='{shelf.pk}']")
    assert card.locator("[data-testid=box-label]").inner_text() == "Box: whole image"
    assert card.locator("[data-testid=box-overlay]").count() == 0
    # each stage is its photo's rectangle, letterboxed in the square frame
    for image, (width, height) in ((shelf, WIDE), (close, TALL)):
        frame = rect(page.locator(f"[data-image-id='{image.pk}'] .box-frame"))
        photo = rect(page.locator(f"[data-image-id='{image.pk}'] .box-stage img"))
        assert photo["width"] / photo["height"] == pytest.approx(width / height, rel=0.01)
        assert max(photo["width"], photo["height"]) == pytest.approx(frame["width"], abs=1)
        assert photo["x"] + photo["width"] / 2 == pytest.approx(frame["x"] + frame["width"] / 2, abs=1)
        assert photo["y"] + photo["height"] / 2 == pytest.approx(frame["y"] + frame["height"] / 2, abs=1)
    first = screenshot("box-01-whole-images")

    card.locator("[data-testid=box-edit]").click()
    editor = page.locator("[data-testid=box-editor]")
    editor.wait_for(state="visible")
    wait_for_images(page, "[data-testid=box-editor-stage] img")
    stage = rect(page.locator("[data-testid=box-editor-stage]"))
    assert stage["width"] / stage["height"] == pytest.approx(WIDE[0] / WIDE[1], rel=0.01)

    def on_stage(x, y):
        return stage["x"] + x / WIDE[0] * stage["width"], stage["y"] + y / WIDE[1] * stage["height"]

    page.mouse.move(*on_stage(*DRAG_FROM))
    page.mouse.down()
    page.mouse.move(*on_stage(320, 240), steps=5)
    page.mouse.move(*on_stage(*DRAG_TO), steps=5)
    page.mouse.up()
    drawn_text = page.inner_text("[data-testid=box-coords]")
    corners = [int(v) for v in drawn_text.split(" px")[0].replace(" – ", ",").split(",")]
    assert corners == pytest.approx([*DRAG_FROM, *DRAG_TO], abs=2), drawn_text
    drawn, photo = rect(page.locator("[data-testid=box-drawn]")), stage
    assert drawn["x"] - photo["x"] == pytest.approx(corners[0] / WIDE[0] * photo["width"], abs=1.5)
    # the viewport as a person sees it: a full-page capture stretches the modal's fixed backdrop
    page.screenshot(path=str(first.with_name("box-02-drawn-in-the-editor.png")))

    with page.expect_navigation():
        page.click("[data-testid=box-save]")  # saved; the page reloads and follows the re-embedding
    saved = ReferenceImage.unscoped.get(pk=shelf.pk).bbox
    assert saved == [float(v) for v in corners]
    page.locator(f"[data-image-id='{shelf.pk}'] [data-testid=box-overlay]").wait_for(timeout=60_000)
    assert Embedding.unscoped.get(reference_image=shelf).box == saved

    page.reload()
    wait_for_images(page, "[data-testid=image-card] img")
    card = page.locator(f"[data-image-id='{shelf.pk}']")
    label = card.locator("[data-testid=box-label]")
    assert label.inner_text() == "Box: {:.0f} × {:.0f} px".format(saved[2] - saved[0], saved[3] - saved[1])
    assert label.get_attribute("title") == "{:.0f},{:.0f} – {:.0f},{:.0f} px".format(*saved)
    assert card.locator("[data-testid=box-reembedding]").count() == 0
    photo, overlay = rect(card.locator(".box-stage img")), rect(card.locator("[data-testid=box-overlay]"))
    scale = photo["width"] / WIDE[0]
    assert overlay["x"] - photo["x"] == pytest.approx(saved[0] * scale, abs=1)
    assert overlay["y"] - photo["y"] == pytest.approx(saved[1] * scale, abs=1)
    assert overlay["width"] == pytest.approx((saved[2] - saved[0]) * scale, abs=1)
    assert overlay["height"] == pytest.approx((saved[3] - saved[1]) * scale, abs=1)
    assert page.locator(f"[data-image-id='{close.pk}'] [data-testid=box-label]").inner_text() == "Box: whole image"
    screenshot("box-03-corrected")
    card.screenshot(path=str(first.with_name("box-04-corrected-card.png")))

    # the gallery's own setting: crop new reference photos to the detected product
    page.click(".crumbs >> text=Drinks aisle")
    toggle = page.locator("[data-testid=detect-references]")
    assert not toggle.is_checked()
    toggle.check()
    with page.expect_navigation():
        page.click("#gallery-settings button[type=submit]")
    assert page.locator("[data-testid=detect-references]").is_checked()
    assert Gallery.unscoped.get(pk=gallery.pk).detect_references is True
    screenshot("box-05-gallery-setting")
