"""A member fills a gallery in Chromium: create it, import a zip (real worker), open a product, upload a photo."""
import io
import zipfile

import pytest
from PIL import Image, ImageDraw
from tests.support.browser import log_in, wait_for_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PRODUCTS = {"Cola 330 ml": (196, 30, 45), "Lemon Soda 330 ml": (236, 196, 40), "Mineral Water 500 ml": (45, 120, 215)}


def product_photo(label: str, colour: tuple[int, int, int], shot: int) -> bytes:
    """A can of `colour` on a plain backdrop; each shot shifts and tints it so the bytes (and pictures) differ."""
    image = Image.new("RGB", (300, 400), (244, 243, 238) if shot % 2 == 0 else (222, 228, 236))
    draw = ImageDraw.Draw(image)
    left = 70 + shot * 18
    draw.rounded_rectangle([left, 50, left + 150, 355], radius=26, fill=colour, outline=(50, 50, 50), width=3)
    draw.rectangle([left, 165, left + 150, 235], fill=(250, 250, 250))
    draw.text((left + 10, 192), label.split()[0], fill=(30, 30, 30), font_size=22)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def gallery_zip() -> bytes:
    """labels.txt plus two photos of each of three products: six rows."""
    buffer = io.BytesIO()
    lines = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (label, colour) in enumerate(PRODUCTS.items()):
            for shot in range(2):
                path = f"images/p{index}_{shot}.jpg"
                archive.writestr(path, product_photo(label, colour, shot))
                lines.append(f"{path}\t{label}")
        archive.writestr("labels.txt", "\n".join(lines) + "\n")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _progress_bar_settled(page):
    """The bar's width animates; wait until it is drawn full, so the screenshot shows what a person sees."""
    page.wait_for_function(
        """() => { const bar = document.querySelector('.progress-bar');
             return bar.getBoundingClientRect().width >= bar.parentElement.getBoundingClientRect().width - 1; }"""
    )


@pytest.mark.slow
def test_create_import_and_upload(page, live_server, tenant_a, celery_worker, screenshot):
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.click("nav.sidebar >> text=Galleries")
    page.wait_for_selector("[data-testid=gallery-table]")
    screenshot("galleries-01-empty-list")

    page.fill("[data-testid=create-gallery] input[name=name]", "Drinks aisle")
    page.fill("[data-testid=create-gallery] input[name=description]", "Chilled drinks, shelf 3")
    page.click("text=Create gallery")
    page.wait_for_selector("#import-panel")
    assert page.inner_text("[data-testid=page-title]") == "Drinks aisle"
    screenshot("galleries-02-created")

    page.set_input_files(
        "[data-testid=import-file]", files=[{"name": "drinks.zip", "mimeType": "application/zip", "buffer": gallery_zip()}]
    )
    page.wait_for_selector("[data-testid=import-progress]:not([hidden])")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=import-status]').textContent === 'done'", timeout=120_000
    )
    counts = page.inner_text("[data-testid=import-counts]")
    assert "6 imported" in counts and "0 failed" in counts and "of 6" in counts
    assert page.get_attribute(".progress", "aria-valuenow") == "100"
    _progress_bar_settled(page)
    # The product table and the import list refresh without a reload.
    page.wait_for_function("() => document.querySelectorAll('[data-testid=product-row]').length === 3")
    page.wait_for_selector("[data-testid=import-table] >> text=Done")
    wait_for_images(page, "[data-testid=product-table] img.thumb")
    assert page.locator("[data-testid=coverage-warning]").count() == 0  # two ready images each
    screenshot("galleries-03-imported")

    page.click("[data-testid=product-table] >> text=Cola 330 ml")
    page.wait_for_selector("[data-testid=image-grid]")
    assert page.inner_text("[data-testid=page-title]") == "Cola 330 ml"
    assert page.locator("[data-testid=image-card]").count() == 2
    wait_for_images(page, "[data-testid=image-card] img")
    screenshot("galleries-04-product")

    page.set_input_files(
        "[data-testid=upload-file]",
        files=[
            {"name": "cola-new-angle.jpg", "mimeType": "image/jpeg", "buffer": product_photo("Cola 330 ml", (176, 24, 38), 3)},
            {"name": "notes.txt", "mimeType": "image/jpeg", "buffer": b"this is not a photo"},
        ],
    )
    page.wait_for_selector(".upload-result.ok >> text=cola-new-angle.jpg")
    page.wait_for_selector(".upload-result.bad >> text=notes.txt")
    assert "not_an_image" in page.inner_text(".upload-result.bad")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=image-card]').length === 3")
    # The worker embeds the new image; the page follows it from pending to ready.
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=image-card][data-status=ready]').length === 3", timeout=60_000
    )
    wait_for_images(page, "[data-testid=image-card] img")
    # the coverage line follows the same poll as the cards; give it that one poll to catch up
    page.wait_for_function(
        "() => document.querySelector('[data-testid=coverage]').innerText.includes('3 ready')", timeout=10_000)
    screenshot("galleries-05-uploaded")

    # A second zip with a broken photo and a missing file: the good row lands, the bad rows are listed with codes.
    page.click(".crumbs >> text=Drinks aisle")
    page.set_input_files("[data-testid=import-file]", files=[{"name": "more.zip", "mimeType": "application/zip", "buffer": _zip({
        "labels.txt": "fresh.jpg\tIced Tea 500 ml\nbroken.jpg\tIced Tea 500 ml\nmissing.jpg\tIced Tea 500 ml\n".encode(),
        "fresh.jpg": product_photo("Iced Tea", (120, 70, 20), 0), "broken.jpg": b"not a jpeg at all",
    })}])
    page.wait_for_function(
        "() => document.querySelector('[data-testid=import-status]').textContent === 'done'", timeout=120_000
    )
    assert "1 imported" in page.inner_text("[data-testid=import-counts]") and "2 failed" in page.inner_text("[data-testid=import-counts]")
    errors = page.inner_text("[data-testid=import-errors]")
    assert "not_an_image" in errors and "missing_file" in errors
    page.wait_for_function("() => document.querySelectorAll('[data-testid=product-row]').length === 4")
    wait_for_images(page, "[data-testid=product-table] img.thumb")
    _progress_bar_settled(page)
    screenshot("galleries-06-import-row-errors")


def _stored_image(product, data: bytes, status: str, failure_reason: str = "", size=(300, 400)):
    """A reference image row and its object, written directly (no worker in this test)."""
    import hashlib

    from galleries.models import ReferenceImage
    from galleries.services import reference_image_object_key
    from shitu_platform.object_store import object_store

    checksum = hashlib.sha256(data).hexdigest()
    key = reference_image_object_key(gallery=product.gallery, checksum=checksum)
    object_store().put(key, data, content_type="image/jpeg")
    return ReferenceImage.objects.create(
        tenant=product.tenant, gallery=product.gallery, product=product, object_key=key, checksum=checksum,
        size_bytes=len(data), width=size[0], height=size[1], status=status, failure_reason=failure_reason,
    )


def test_viewer_sees_coverage_warnings_and_failures_read_only(page, live_server, tenant_a, screenshot):
    from galleries.models import Gallery, Product

    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Snacks", description="Aisle 4")
    chips = Product.objects.create(tenant=tenant_a.tenant, gallery=gallery, label="Paprika Chips 150 g", sku="PC-150",
                                   display_name="Crunchy paprika chips", attributes={"brand": "Crispo", "size": "150 g"})
    nuts = Product.objects.create(tenant=tenant_a.tenant, gallery=gallery, label="Salted Peanuts", attributes={"brand": "Nutty"})
    _stored_image(chips, product_photo("Paprika", (220, 90, 30), 0), "ready")
    _stored_image(chips, product_photo("Paprika", (220, 90, 30), 1), "ready")
    _stored_image(chips, product_photo("Paprika", (220, 90, 30), 2), "pending")
    _stored_image(nuts, product_photo("Peanuts", (150, 110, 60), 0), "ready")
    _stored_image(nuts, b"\x89PNG but truncated", "failed", "truncated_image: the file ends before the image data does")

    log_in(page, live_server.url, tenant_a.users["viewer"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/galleries/")
    assert page.locator("[data-testid=create-gallery]").count() == 0
    assert page.inner_text("[data-testid=failed-count]") == "1"
    screenshot("galleries-07-viewer-list")

    page.click("text=Snacks")
    page.wait_for_selector("[data-testid=product-table]")
    assert page.locator("#import-panel").count() == 0
    assert page.locator("[data-testid=coverage-warning]").count() == 1  # peanuts: one ready, one failed
    wait_for_images(page, "[data-testid=product-table] img.thumb")  # the broken one is a grey placeholder
    screenshot("galleries-08-viewer-gallery")

    page.fill("input[name=q]", "brand:Nutty")
    page.click("button:has-text('Filter')")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=product-row]').length === 1")
    page.click("[data-testid=product-table] >> text=Salted Peanuts")
    page.wait_for_selector("[data-testid=image-grid]")
    assert "truncated_image" in page.inner_text("[data-testid=failure-reason]")
    assert page.locator("#upload-panel").count() == 0 and page.locator("button:has-text('Delete')").count() == 0
    wait_for_images(page, "[data-testid=image-card] img")
    screenshot("galleries-09-viewer-product-failed")
