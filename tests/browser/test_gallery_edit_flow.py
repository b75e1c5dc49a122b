"""In Chromium: a member renames a gallery, then deletes a product after a confirmation page that says what goes.
Screenshots go to var/screenshots."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.services import reference_image_upload
from tests.support.browser import log_in, wait_for_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def can_photo(colour: tuple[int, int, int], shot: int) -> bytes:
    image = Image.new("RGB", (240, 320), (244, 243, 238))
    draw = ImageDraw.Draw(image)
    left = 50 + shot * 20
    draw.rounded_rectangle([left, 40, left + 120, 280], radius=20, fill=colour, outline=(50, 50, 50), width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def stocked_gallery(world) -> tuple[Gallery, Product]:
    """Two products with stored photos; the rows are marked ready as a worker would (no worker runs here)."""
    gallery = Gallery.objects.create(tenant=world.tenant, name="Drinks")
    # photos recorded under an import job are not queued for embedding, so no broker is needed
    job = ImportJob.objects.create(tenant=world.tenant, gallery=gallery, archive_key="k/seed.zip", status="done")
    products = {}
    for label, colour in (("Cola 330 ml", (196, 30, 45)), ("Lemon Soda 330 ml", (236, 196, 40))):
        product = Product.objects.create(tenant=world.tenant, gallery=gallery, label=label, attributes={"brand": "Acme"})
        for shot in range(3):
            reference_image_upload(product=product, data=can_photo(colour, shot), import_job=job)
        products[label] = product
    ReferenceImage.unscoped.filter(gallery=gallery).update(status="ready")
    return gallery, products["Cola 330 ml"]


def test_rename_a_gallery_and_delete_a_product(page, live_server, tenant_a, screenshot):
    gallery, cola = stocked_gallery(tenant_a)
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/galleries/{gallery.pk}/")

    page.click("[data-testid=gallery-edit]")
    page.fill("input[name=name]", "Cold drinks – Kühlregal")
    page.click("[data-testid=gallery-save]")
    page.wait_for_selector("text=Gallery renamed")
    assert page.inner_text("[data-testid=page-title]") == "Cold drinks – Kühlregal"
    assert Gallery.unscoped.get(pk=gallery.pk).name == "Cold drinks – Kühlregal"

    page.click("a.product-label >> text=Cola 330 ml")
    page.click("[data-testid=product-edit]")
    assert page.input_value("input[name=label]") == "Cola 330 ml"
    assert page.input_value("textarea[name=attributes]") == "brand: Acme"
    screenshot("product-edit")
    page.click("[data-testid=product-delete-link]")
    assert page.inner_text("[data-testid=count-images]") == "3"
    assert Product.unscoped.filter(pk=cola.pk).exists()  # the confirmation page deletes nothing
    screenshot("product-delete-confirmation")

    page.click("[data-testid=confirm-delete]")
    page.wait_for_selector("text=deleted with its images")
    labels = page.locator("[data-testid=product-row] a.product-label").all_inner_texts()
    assert labels == ["Lemon Soda 330 ml"]
    assert not Product.unscoped.filter(pk=cola.pk).exists()
    wait_for_images(page, "[data-testid=product-row] img.thumb")
    screenshot("gallery-after-rename-and-product-delete")

    page.goto(f"{live_server.url}/dashboard/galleries/{gallery.pk}/delete/")
    assert page.inner_text("[data-testid=count-products]") == "1"
    assert page.inner_text("[data-testid=count-images]") == "3"
    screenshot("gallery-delete-confirmation")
