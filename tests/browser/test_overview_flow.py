"""In Chromium: a new tenant's overview says "Get started"; once it has a gallery, recognitions, feedback, an import
and a fine-tune, the overview shows their figures, a bar per day and the jobs' states, and no hint."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from galleries.models import ImportJob
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.tenancy.models import Tenant
from tests.support.browser import log_in
from training.models import FineTuneJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DAILY = {0: 7, 1: 3, 2: 0, 3: 12, 6: 5, 9: 1, 13: 8, 20: 2, 29: 4}  # days back from today: recognitions


def _history(world, gallery_id: int, zone: ZoneInfo) -> None:
    from galleries.models import Gallery

    gallery = Gallery.objects.for_tenant(world.tenant).get(pk=gallery_id)
    today = timezone.now().astimezone(zone).date()
    for days_back, count in DAILY.items():
        at = dt.datetime.combine(today - dt.timedelta(days=days_back), dt.time(0, 20), tzinfo=zone)
        for index in range(count):
            recognition = Recognition(tenant=world.tenant, gallery=gallery, image_key="q.jpg", image_width=10, image_height=10,
                                      status=Recognition.Status.FAILED if days_back == 3 and index < 2 else Recognition.Status.DONE)
            recognition.save()
            Recognition.objects.for_tenant(world.tenant).filter(pk=recognition.pk).update(created_at=at)
            if days_back == 0 and index < 4:  # users confirmed three of four answers today
                detected = DetectedObject(tenant=world.tenant, recognition=recognition, rank=0, bbox=[0, 0, 5, 5],
                                          det_score=1.0, score=0.9)
                detected.save()
                verdict = "wrong" if index == 3 else "correct"
                MatchReview(tenant=world.tenant, detected_object=detected, gallery=gallery, reason="flagged", verdict=verdict,
                            status="open" if verdict == "wrong" else "confirmed").save()
    ImportJob(tenant=world.tenant, gallery=gallery, archive_key="a.zip", archive_name="aisle-3.zip",
              status=ImportJob.Status.DONE, total_rows=40, next_row=40, imported=40).save()
    FineTuneJob(tenant=world.tenant, gallery=gallery, state=FineTuneJob.State.TRAINING, progress=0.35).save()


@pytest.mark.slow
def test_overview_fills_in_as_the_tenant_works(page, live_server, tenant_a, screenshot):
    zone = ZoneInfo("Asia/Shanghai")
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="Asia/Shanghai")
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    assert page.is_visible("[data-testid=get-started]")
    assert page.inner_text("[data-testid=figure-galleries] [data-field=value]") == "0"
    screenshot("overview-01-new-tenant")

    page.click("[data-testid=get-started] >> text=Create a gallery")
    page.fill("[data-testid=create-gallery] input[name=name]", "Drinks aisle")
    page.click("text=Create gallery")
    page.wait_for_selector("#import-panel")
    gallery_id = int(page.url.rstrip("/").split("/")[-1])
    _history(tenant_a, gallery_id, zone)

    page.click("nav.sidebar >> text=Overview")
    page.wait_for_selector("[data-testid=recognitions-chart]")
    assert not page.is_visible("[data-testid=get-started]")
    assert page.inner_text("[data-testid=figure-galleries] [data-field=value]") == "1"
    assert page.inner_text("[data-testid=figure-recognitions] [data-field=value]") == str(sum(DAILY.values()))
    assert page.inner_text("[data-testid=figure-confirmed] [data-field=value]") == "75 %"
    assert "Asia/Shanghai" in page.inner_text("[data-testid=chart-caption]")

    # one bar per day, today's last; drawn heights follow the counts (12 is the tallest, an empty day has none)
    bars = page.locator("[data-testid=day-bar]")
    assert bars.count() == 30
    today = timezone.now().astimezone(zone).date()
    heights = {}
    for days_back in (0, 2, 3):
        day = (today - dt.timedelta(days=days_back)).isoformat()
        bar = page.locator(f"[data-testid=day-bar][data-day='{day}'] rect.ov-bar")
        heights[days_back] = bar.bounding_box()["height"] if bar.count() else 0.0
    assert heights[3] > heights[0] > 0 and heights[2] == 0
    assert bars.last.get_attribute("data-day") == today.isoformat()
    assert page.locator(f"[data-testid=day-bar][data-day='{(today - dt.timedelta(days=3)).isoformat()}'] rect.ov-bar-failed").count() == 1

    assert "aisle-3.zip" in page.inner_text("[data-testid=overview-imports]")
    assert "40 of 40" in page.inner_text("[data-testid=overview-imports]")
    fine_tunes = page.inner_text("[data-testid=overview-finetunes]")
    assert "Training" in fine_tunes and "35 %" in fine_tunes and "CST" in fine_tunes
    screenshot("overview-02-working-tenant")
