"""The tenant overview: figures from every app, recognitions per day in the tenant's own days, feedback share,
recent imports and fine-tunes, the "Get started" hint only without a gallery, and nothing of another tenant."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.tenancy.models import Tenant
from training.models import FineTuneJob

pytestmark = pytest.mark.django_db


def _overview(world, role: str = "viewer") -> str:
    response = world.client(role).get("/dashboard/")
    assert response.status_code == 200
    return response.content.decode()


def _figure(page: str, key: str) -> tuple[str, str]:
    """(value, detail) of one figure card."""
    card = re.search(rf'data-testid="{key}">(.*?)</div>\s*</div>', page, re.S)
    assert card, f"no figure {key}"
    value = re.sub(r"<[^>]+>", "", re.search(r'data-field="value">(.*?)</div>', card.group(0), re.S).group(1)).strip()
    detail = re.search(r'data-field="detail">(.*?)</div>', card.group(0), re.S)
    return value, (detail.group(1).strip() if detail else "")


def _bars(page: str) -> dict[str, tuple[int, int]]:
    return {day: (int(count), int(failed)) for day, count, failed in
            re.findall(r'data-testid="day-bar" data-day="([\d-]+)" data-count="(\d+)" data-failed="(\d+)"', page)}


def _gallery(world, name: str = "Drinks", images: int = 0) -> Gallery:
    gallery = Gallery(tenant=world.tenant, name=name)
    gallery.save()
    product = Product(tenant=world.tenant, gallery=gallery, label=f"{name} cola")
    product.save()
    for index in range(images):
        ReferenceImage(tenant=world.tenant, gallery=gallery, product=product, object_key=f"k/{name}/{index}",
                       checksum=f"{name}-{index}".ljust(64, "0"), size_bytes=10, status=ReferenceImage.Status.READY).save()
    return gallery


def _recognition(world, gallery: Gallery, at: dt.datetime, status: str = Recognition.Status.DONE) -> Recognition:
    recognition = Recognition(tenant=world.tenant, gallery=gallery, image_key="q.jpg", image_width=10, image_height=10,
                              status=status)
    recognition.save()
    Recognition.objects.for_tenant(world.tenant).filter(pk=recognition.pk).update(created_at=at)
    return recognition


def _feedback(world, gallery: Gallery, verdict: str, reason: str = MatchReview.Reason.FLAGGED) -> None:
    recognition = _recognition(world, gallery, timezone.now())
    detected = DetectedObject(tenant=world.tenant, recognition=recognition, rank=0, bbox=[0, 0, 5, 5], det_score=1.0, score=0.9)
    detected.save()
    MatchReview(tenant=world.tenant, detected_object=detected, gallery=gallery, reason=reason, verdict=verdict,
                status=MatchReview.Status.CONFIRMED if verdict == "correct" else MatchReview.Status.OPEN).save()


def test_a_tenant_without_gallery_is_told_to_create_one(tenant_a):
    page = _overview(tenant_a)
    assert 'data-testid="get-started"' in page
    assert _figure(page, "figure-galleries")[0] == "0" and _figure(page, "figure-recognitions")[0] == "0"
    assert "No recognitions in the last 30 days yet" in page and "No imports yet." in page


def test_a_tenant_with_a_gallery_sees_its_figures_and_no_get_started(tenant_a):
    _gallery(tenant_a, images=3)
    page = _overview(tenant_a)
    assert 'data-testid="get-started"' not in page
    assert _figure(page, "figure-galleries") == ("1", "1 product")
    assert _figure(page, "figure-images") == ("3", "3 ready")


def test_recognitions_are_counted_per_day_of_the_tenant_zone(tenant_a):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="Asia/Shanghai")
    gallery = _gallery(tenant_a)
    shanghai = ZoneInfo("Asia/Shanghai")
    today = timezone.now().astimezone(shanghai).date()
    just_after_midnight = dt.datetime.combine(today, dt.time(0, 30), tzinfo=shanghai)  # still yesterday in UTC
    _recognition(tenant_a, gallery, just_after_midnight)
    _recognition(tenant_a, gallery, just_after_midnight, status=Recognition.Status.FAILED)
    _recognition(tenant_a, gallery, dt.datetime.combine(today - dt.timedelta(days=3), dt.time(23, 30), tzinfo=shanghai))
    _recognition(tenant_a, gallery, dt.datetime.combine(today - dt.timedelta(days=31), dt.time(12), tzinfo=shanghai))

    page = _overview(tenant_a)
    bars = _bars(page)
    assert len(bars) == 30 and max(bars) == today.isoformat()
    assert bars[today.isoformat()] == (2, 1)
    assert bars[(today - dt.timedelta(days=1)).isoformat()] == (0, 0)
    assert bars[(today - dt.timedelta(days=3)).isoformat()] == (1, 0)
    assert sum(count for count, _ in bars.values()) == 3
    assert _figure(page, "figure-recognitions") == ("3", "1 failed")
    assert "days in Asia/Shanghai (UTC+0800)" in page


def test_share_confirmed_counts_user_feedback_only(tenant_a):
    gallery = _gallery(tenant_a)
    for verdict in ["correct", "correct", "correct", "wrong"]:
        _feedback(tenant_a, gallery, verdict)
    _feedback(tenant_a, gallery, "", reason=MatchReview.Reason.LOW_MARGIN)  # queued by a thin margin, not by a user
    assert _figure(_overview(tenant_a), "figure-confirmed") == ("75 %", "3 of 4 answers with feedback")


def test_recent_imports_and_fine_tunes_show_their_states_and_times(tenant_a):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="America/New_York")
    gallery = _gallery(tenant_a)
    ImportJob(tenant=tenant_a.tenant, gallery=gallery, archive_key="a.zip", archive_name="shelf.zip",
              status=ImportJob.Status.RUNNING, total_rows=10, next_row=4).save()
    job = FineTuneJob(tenant=tenant_a.tenant, gallery=gallery, state=FineTuneJob.State.TRAINING, progress=0.4)
    job.save()
    FineTuneJob.objects.for_tenant(tenant_a.tenant).filter(pk=job.pk).update(
        created_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    page = _overview(tenant_a)
    imports = page[page.index('data-testid="overview-imports"'):]
    assert "shelf.zip" in imports and "Running" in imports and "4 of 10" in imports
    fine_tunes = page[page.index('data-testid="overview-finetunes"'):]
    assert "Training" in fine_tunes and "40 %" in fine_tunes and "2024-12-31 19:00 EST" in fine_tunes
    assert _figure(page, "figure-finetunes") == ("1", "1 running")


def test_another_tenants_rows_never_reach_the_overview(tenant_a, tenant_b):
    gallery_b = _gallery(tenant_b, name="Bolt secret shelf", images=2)
    _recognition(tenant_b, gallery_b, timezone.now())
    _feedback(tenant_b, gallery_b, "correct")
    ImportJob(tenant=tenant_b.tenant, gallery=gallery_b, archive_key="b.zip", archive_name="bolt-secret.zip").save()
    FineTuneJob(tenant=tenant_b.tenant, gallery=gallery_b).save()

    page = _overview(tenant_a)
    assert "Bolt secret" not in page and "bolt-secret.zip" not in page
    assert 'data-testid="get-started"' in page
    for key in ["figure-galleries", "figure-images", "figure-recognitions", "figure-finetunes"]:
        assert _figure(page, key)[0] == "0", key
    assert _figure(page, "figure-confirmed")[0] == "–"
    assert sum(count for count, _ in _bars(page).values()) == 0
    # and B sees its own
    page_b = _overview(tenant_b)
    assert "Bolt secret shelf" in page_b and _figure(page_b, "figure-recognitions")[0] == "2"
