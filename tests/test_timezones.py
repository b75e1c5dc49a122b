"""Dashboard times are in the tenant's time zone and say which zone; the API stays in UTC."""
from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from shitu_platform.tenancy.models import ApiKey, Tenant
from training.models import FineTuneJob

pytestmark = pytest.mark.django_db

MIDNIGHT_UTC = dt.datetime(2025, 1, 1, 0, 0, tzinfo=dt.timezone.utc)


def _key_made_at_midnight(world) -> ApiKey:
    world.api_key("member")
    api_key = ApiKey.objects.for_tenant(world.tenant).get()
    ApiKey.unscoped.filter(pk=api_key.pk).update(created_at=MIDNIGHT_UTC)
    return api_key


def _set_zone(world, name: str) -> None:
    Tenant.objects.filter(pk=world.tenant.pk).update(time_zone=name)


def test_a_new_tenant_is_in_utc_and_its_times_say_so(tenant_a):
    assert tenant_a.tenant.time_zone == "UTC"
    _key_made_at_midnight(tenant_a)
    page = tenant_a.client("admin").get("/dashboard/api-keys/").content.decode()
    assert '<time datetime="2025-01-01T00:00:00+00:00"' in page and ">2025-01-01 00:00 UTC</time>" in page


def test_a_shanghai_tenant_sees_plus_eight_hours_labelled_cst(tenant_a):
    _set_zone(tenant_a, "Asia/Shanghai")
    api_key = _key_made_at_midnight(tenant_a)
    client = tenant_a.client("admin")
    listing = client.get("/dashboard/api-keys/").content.decode()
    assert '<time datetime="2025-01-01T08:00:00+08:00" title="Asia/Shanghai (UTC+0800)">2025-01-01 08:00 CST</time>' in listing
    detail = client.get(f"/dashboard/api-keys/{api_key.pk}/").content.decode()
    assert "2025-01-01 08:00 CST" in detail
    api = client.get(f"/api/v1/api-keys/{api_key.pk}/").json()
    assert dt.datetime.fromisoformat(api["created_at"].replace("Z", "+00:00")).utcoffset() == dt.timedelta(0)
    assert timezone.get_current_timezone_name() == "UTC"  # the zone ends with the request


def test_fine_tuning_pages_label_their_times(tenant_a):
    from galleries.models import Gallery

    _set_zone(tenant_a, "America/New_York")
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="drinks")
    job = FineTuneJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, state=FineTuneJob.State.FAILED)
    FineTuneJob.unscoped.filter(pk=job.pk).update(created_at=MIDNIGHT_UTC, finished_at=MIDNIGHT_UTC)
    client = tenant_a.client("member")
    assert "2024-12-31 19:00 EST" in client.get("/dashboard/training/").content.decode()
    assert "2024-12-31 19:00:00 EST" in client.get(f"/dashboard/training/jobs/{job.pk}/").content.decode()


def test_the_time_zone_is_validated_against_zoneinfo(tenant_a):
    tenant = tenant_a.tenant
    tenant.time_zone = "Mars/Olympus"
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert caught.value.error_dict["time_zone"][0].code == "invalid_time_zone"
    tenant.time_zone = "Asia/Shanghai"
    tenant.full_clean()


def test_a_bad_zone_written_around_the_validator_falls_back_to_utc(tenant_a):
    _set_zone(tenant_a, "Mars/Olympus")
    _key_made_at_midnight(tenant_a)
    response = tenant_a.client("admin").get("/dashboard/api-keys/")
    assert response.status_code == 200 and "2025-01-01 00:00 UTC" in response.content.decode()
