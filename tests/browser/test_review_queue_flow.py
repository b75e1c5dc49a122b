"""In Chromium: staff's review queue across tenants, least confident first, and a bulk relabel through its product page.
Screenshots go to var/screenshots."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from recognition.models import MatchReview
from tests.support.browser import log_in, wait_for_images
from tests.test_admin_review_queue import QUEUE, Shelf

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_queue_and_bulk_relabel_in_the_browser(page, live_server, tenant_a, tenant_b, screenshot):
    shelf_a, shelf_b = Shelf(tenant_a), Shelf(tenant_b)
    shelf_a.review(confidence=0.82, colour=(200, 40, 40))
    doubtful = shelf_a.review(confidence=0.12, reason="flagged", colour=(40, 170, 60))
    shelf_b.review(confidence=None, score=0.41, colour=(30, 70, 200))
    also_doubtful = shelf_a.review(confidence=0.35, colour=(50, 160, 70))
    get_user_model().objects.create_superuser("root", password="staff-password-1")
    page.set_viewport_size({"width": 1680, "height": 900})  # a staff screen: the queue's columns side by side
    log_in(page, live_server.url, "root", "staff-password-1", wait=False)
    page.goto(f"{live_server.url}{QUEUE}")
    wait_for_images(page, "#result_list img")
    assert page.inner_text("#content h1") == "Review queue: least confident first"
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 4
    assert rows.nth(0).locator("td.field-certainty").inner_text() == "12%"
    assert rows.nth(1).locator("td.field-certainty").inner_text() == "35%"
    assert rows.nth(2).locator("td.field-certainty").inner_text() == "uncalibrated"
    screenshot("admin-review-queue")

    for review in (doubtful, also_doubtful):
        page.check(f"input[name=_selected_action][value='{review.pk}']")
    page.select_option("select[name=action]", "relabel_selected")
    page.click("button[name=index]")
    page.wait_for_selector("select#id_product")
    wait_for_images(page, ".relabel-items img")
    screenshot("admin-review-queue-relabel")
    page.select_option("select#id_product", label="Green Tea")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert "2 relabelled to Green Tea" in page.inner_text(".messagelist")
    assert page.locator("#result_list tbody tr").count() == 2
    assert set(MatchReview.unscoped.filter(status="relabelled").values_list("pk", flat=True)) == {doubtful.pk, also_doubtful.pk}
