"""The recognition pages (list, detail, review queue) show times in the tenant's zone, labelled with it."""
from __future__ import annotations

import datetime as dt

import pytest

from galleries.models import Gallery
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db

MIDNIGHT_UTC = dt.datetime(2025, 1, 1, 0, 0, tzinfo=dt.timezone.utc)


def test_recognition_pages_show_times_in_the_tenants_zone(tenant_a):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="Asia/Shanghai")
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Drinks")
    recognition = Recognition.objects.create(
        tenant=tenant_a.tenant, gallery=gallery, image_key="k", image_width=10, image_height=10, status="done",
        webhook_url="https://hooks.example.com/shitu")
    Recognition.unscoped.filter(pk=recognition.pk).update(
        created_at=MIDNIGHT_UTC, finished_at=MIDNIGHT_UTC + dt.timedelta(seconds=2),
        webhook_status="delivered", webhook_attempts=1, webhook_delivered_at=MIDNIGHT_UTC + dt.timedelta(seconds=3))
    detected = DetectedObject.objects.create(tenant=tenant_a.tenant, recognition=recognition, rank=0, bbox=[0, 0, 10, 10],
                                             det_score=1, score=0.5)
    review = MatchReview.objects.create(tenant=tenant_a.tenant, detected_object=detected, gallery=gallery, reason="flagged")
    MatchReview.unscoped.filter(pk=review.pk).update(created_at=MIDNIGHT_UTC)
    client = tenant_a.client("admin")

    listing = client.get("/dashboard/recognition/").content.decode()
    assert '<time datetime="2025-01-01T08:00:00+08:00" title="Asia/Shanghai (UTC+0800)">2025-01-01 08:00:00 CST</time>' in listing
    detail = client.get(f"/dashboard/recognition/{recognition.public_id}/").content.decode()
    assert ">2025-01-01 08:00:00 CST</time>" in detail
    assert "finished <time" in detail and ">2025-01-01 08:00:02 CST</time>" in detail
    assert "delivered <time" in detail and ">2025-01-01 08:00:03 CST</time>" in detail
    queue = client.get("/dashboard/recognition/review/").content.decode()
    assert ">2025-01-01 08:00 CST</time>" in queue
    assert "2025-01-01 00:00" not in listing + detail + queue  # no UTC wall time left unlabelled
