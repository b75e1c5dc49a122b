"""API keys: shown once, stored hashed, scoped to their tenant, refused once revoked."""
import pytest
from rest_framework.test import APIClient

from shitu_platform.tenancy.models import ApiKey
from shitu_platform.tenancy.services import hash_api_key

pytestmark = pytest.mark.django_db


def test_created_key_is_shown_once_and_only_its_hash_is_stored(tenant_a):
    client = tenant_a.client("admin")
    created = client.post("/api/v1/api-keys/", {"name": "ios app", "role": "member"}, content_type="application/json")
    assert created.status_code == 201
    raw_key = created.json()["key"]
    stored = ApiKey.unscoped.get(pk=created.json()["id"])
    assert raw_key not in (stored.key_hash, stored.prefix) and stored.key_hash == hash_api_key(raw_key)
    listed = client.get(f"/api/v1/api-keys/{stored.pk}/").json()
    assert "key" not in listed and listed["prefix"] == stored.prefix


def test_key_authenticates_as_its_tenant_and_records_last_use(tenant_a):
    raw_key = tenant_a.api_key("member")
    client = APIClient()
    response = client.get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert response.status_code == 200
    assert response.json()["slug"] == tenant_a.tenant.slug and response.json()["role"] == "member"
    assert ApiKey.unscoped.get(prefix=raw_key[6:18]).last_used_at is not None
    assert client.get("/api/v1/tenant/", HTTP_X_API_KEY=raw_key).status_code == 200


def test_revoked_key_is_refused(tenant_a):
    raw_key = tenant_a.api_key("member")
    admin = tenant_a.client("admin")
    key_id = ApiKey.unscoped.get(prefix=raw_key[6:18]).pk
    assert admin.post(f"/api/v1/api-keys/{key_id}/revoke/").status_code == 200
    response = APIClient().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("bad_key", ["shitu_nothing", "shitu_" + "0" * 60, "not-a-key"])
def test_unknown_or_malformed_key_is_401_with_code(db, bad_key):
    response = APIClient().get("/api/v1/tenant/", HTTP_X_API_KEY=bad_key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"authentication_failed", "not_authenticated"}


def test_tampered_key_with_valid_prefix_is_refused(tenant_a):
    raw_key = tenant_a.api_key("member")
    tampered = raw_key[:-4] + ("AAAA" if not raw_key.endswith("AAAA") else "BBBB")
    assert APIClient().get("/api/v1/tenant/", HTTP_X_API_KEY=tampered).status_code == 401


def test_managing_keys_needs_admin_role(tenant_a):
    member_key_client = tenant_a.key_client("member")
    assert member_key_client.get("/api/v1/api-keys/").status_code == 403
    assert tenant_a.client("member").post("/api/v1/api-keys/", {"name": "x"}).status_code == 403
    assert tenant_a.client("viewer").get("/api/v1/api-keys/").status_code == 403


def test_key_cannot_be_created_above_the_creators_role(tenant_a):
    admin_key_client = tenant_a.key_client("admin")
    assert admin_key_client.post("/api/v1/api-keys/", {"name": "escalate", "role": "admin"}, format="json").status_code == 201
    response = tenant_a.client("admin").post("/api/v1/api-keys/", {"name": "x", "role": "owner"}, content_type="application/json")
    assert response.status_code == 400  # owner keys do not exist


def test_unauthenticated_api_gets_401_json(db):
    response = APIClient().get("/api/v1/tenant/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
