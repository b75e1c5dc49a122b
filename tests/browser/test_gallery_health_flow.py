"""In Chromium with a real worker: import a zip, the worker computes the gallery's health after the import, the page
shows each finding with its photos side by side, a member merges two labels of one product, and downloads the CSV.
Screenshots go to var/screenshots."""
from __future__ import annotations

import csv
import io
import time
import zipfile

import pytest

from galleries.models import Gallery, GalleryHealth, Product, ReferenceImage
from tests.galleries.test_health import PALETTES, photo
from tests.support.browser import log_in, wait_for_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def health_zip() -> bytes:
    """Cola (3 shots) and the same first shot saved again as "Cola (old)"; Water with one photo; Orange with three
    shots of its pack and one of another pack; Lemon with three."""
    rows = [("cola", i, "Cola", photo(1, PALETTES["red"], i)) for i in range(3)]
    rows.append(("cola_old", 0, "Cola (old)", photo(1, PALETTES["red"], 0, quality=70)))
    rows.append(("water", 0, "Water", photo(3, PALETTES["blue"], 0)))
    rows += [("orange", i, "Orange", photo(4, PALETTES["orange"], i)) for i in range(3)]
    rows.append(("orange", 9, "Orange", photo(44, PALETTES["orange"], 1)))
    rows += [("lemon", i, "Lemon", photo(5, PALETTES["yellow"], i)) for i in range(3)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        lines = []
        for name, shot, label, data in rows:
            path = f"images/{name}_{shot}.jpg"
            archive.writestr(path, data)
            lines.append(f"{path}\t{label}")
        archive.writestr("labels.txt", "\n".join(lines) + "\n")
    return buffer.getvalue()


def wait_for_report(page, timeout: float = 120) -> None:
    """The worker computes the report after the import; the page refreshes itself while it runs, and a page opened
    before the run was queued is reloaded here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.locator("[data-testid=health-state]")
        if state.count() and state.inner_text() == "Done":
            return
        time.sleep(1)
        page.reload()
    raise AssertionError("the health report was not computed")


@pytest.mark.slow
def test_health_after_import_merge_and_csv(page, live_server, tenant_a, celery_worker, screenshot):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Drinks")
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/galleries/{gallery.pk}/")
    page.set_input_files("[data-testid=import-file]",
                         files=[{"name": "drinks.zip", "mimeType": "application/zip", "buffer": health_zip()}])
    page.wait_for_function("() => document.querySelector('[data-testid=import-status]').textContent === 'done'",
                           timeout=120_000)

    page.click("[data-testid=gallery-health-link]")
    assert page.inner_text("[data-testid=page-title]") == "Gallery health"
    wait_for_report(page)
    assert GalleryHealth.objects.for_tenant(tenant_a.tenant).get(gallery=gallery).computed_at is not None

    confusable = page.locator("[data-testid=confusable-row]")
    assert confusable.count() == 1
    assert confusable.locator("[data-testid=label-a]").inner_text() == "Cola"
    assert confusable.locator("[data-testid=label-b]").inner_text() == "Cola (old)"
    duplicates = page.locator("[data-testid=duplicate-row]")
    assert duplicates.count() >= 1 and "Cola (old)" in duplicates.first.inner_text()
    few = page.locator("[data-testid=few-row] [data-testid=few-label]").all_inner_texts()
    assert sorted(few) == ["Cola (old)", "Water"]
    unverified = page.locator("[data-testid=unverified-row]")
    assert unverified.count() == 1 and "Orange" in unverified.inner_text()
    wait_for_images(page, "img.health-thumb")
    # the pair's photos are side by side: same row, the second to the right of the first
    first, second = (confusable.locator("img.health-thumb").nth(i).bounding_box() for i in range(2))
    assert abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"] + first["width"]
    screenshot("gallery-health-01-report")

    with page.expect_download() as download_info:
        page.click("[data-testid=health-csv]")
    rows = list(csv.DictReader(io.StringIO(open(download_info.value.path(), encoding="utf-8").read())))
    assert {row["label"] for row in rows if row["finding"] == "few_references"} == {"Cola (old)", "Water"}
    assert any(row["finding"] == "confusable_pair" and row["other_label"] == "Cola (old)" for row in rows)

    confusable.locator("[data-testid=merge-b-into-a]").click()
    assert page.inner_text("[data-testid=page-title]") == "Merge “Cola (old)” into “Cola”?"
    assert page.inner_text("[data-testid=count-moving]") == "1"
    screenshot("gallery-health-02-merge-confirm")
    page.click("[data-testid=confirm-merge]")
    page.wait_for_selector("text=Merged “Cola (old)” into “Cola”")
    assert page.inner_text("[data-testid=page-title]") == "Gallery health"
    # fixed findings leave the page at once; the rest stay until the next computation
    assert page.locator("[data-testid=confusable-empty]").count() == 1
    assert page.locator("[data-testid=few-row] [data-testid=few-label]").all_inner_texts() == ["Water"]
    assert page.locator("[data-testid=health-stale]").count() == 1
    cola = Product.objects.for_tenant(tenant_a.tenant).get(gallery=gallery, label="Cola")
    assert ReferenceImage.objects.for_tenant(tenant_a.tenant).filter(product=cola).count() == 4
    assert not Product.objects.for_tenant(tenant_a.tenant).filter(gallery=gallery, label="Cola (old)").exists()
    wait_for_images(page, "img.health-thumb")
    screenshot("gallery-health-03-after-merge")

    page.click("[data-testid=health-recompute]")
    page.wait_for_selector("text=Recomputing the gallery's health")
    wait_for_report(page)
    assert page.locator("[data-testid=health-stale]").count() == 0
    page.goto(f"{live_server.url}/dashboard/galleries/{gallery.pk}/")
    summary = page.inner_text("[data-testid=gallery-health]")
    assert "0 confusable pairs" in summary and "1 with too few photos" in summary
    screenshot("gallery-health-04-gallery-page")
