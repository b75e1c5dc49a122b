"""In Chromium: a member moves a photo filed under the wrong product to the right one from the product page.
Screenshots go to var/screenshots."""
from __future__ import annotations

import pytest

from galleries.models import ReferenceImage
from tests.browser.test_gallery_edit_flow import stocked_gallery
from tests.support.browser import log_in, wait_for_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_move_a_photo_to_another_product(page, live_server, tenant_a, screenshot):
    gallery, cola = stocked_gallery(tenant_a)
    lemon = gallery.products.exclude(pk=cola.pk).get()
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/galleries/products/{cola.pk}/")
    wait_for_images(page, "[data-testid=image-card] img")
    assert page.locator("[data-testid=image-move]").count() == 3
    screenshot("image-move-before")

    card = page.locator("[data-testid=image-card]").first
    image_id = int(card.get_attribute("data-image-id"))
    card.locator("select[name=product]").select_option(label="Lemon Soda 330 ml")
    card.locator("[data-testid=image-move] button").click()
    page.wait_for_selector("text=Image moved to “Lemon Soda 330 ml”")
    assert page.locator("[data-testid=image-card]").count() == 2
    assert ReferenceImage.unscoped.get(pk=image_id).product_id == lemon.pk
    screenshot("image-move-after")
