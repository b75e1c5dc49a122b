"""Per-tenant rate limits: 429 with Retry-After, counted per tenant (one tenant cannot exhaust another's)."""
import pytest

from shitu_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


def test_tenant_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected(tenant_a, tenant_b):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(requests_per_minute=3)
    client_a = tenant_a.key_client("member")
    statuses = [client_a.get("/api/v1/galleries/").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limited = client_a.get("/api/v1/galleries/")
    assert limited.json()["error"]["code"] == "rate_limited" and int(limited["Retry-After"]) >= 1
    assert tenant_b.key_client("member").get("/api/v1/galleries/").status_code == 200


def test_recognitions_have_their_own_stricter_limit(tenant_a):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(recognitions_per_minute=1)
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    first = client.post("/api/v1/recognitions/", {"image_base64": "AAAA"}, format="json")
    second = client.post("/api/v1/recognitions/", {"image_base64": "AAAA"}, format="json")
    assert first.status_code == 400 and second.status_code == 429
    assert client.get("/api/v1/recognitions/").status_code == 200  # reads use the general limit
