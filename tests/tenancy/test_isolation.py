"""Tenant A never sees or acts on tenant B's objects: 404 for every object URL, in the dashboard and the API."""
import pytest
from django.urls import reverse

from shitu_platform.tenancy.models import ApiKey, Membership
from shitu_platform.tenancy.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture()
def b_objects(tenant_b):
    api_key, _ = api_key_create(tenant=tenant_b.tenant, name="B's key", role="member")
    membership = Membership.objects.for_tenant(tenant_b.tenant).first()
    return {"api_key": api_key, "membership": membership}


API_OBJECT_URLS = [
    ("get", lambda o: f"/api/v1/api-keys/{o['api_key'].pk}/"),
    ("post", lambda o: f"/api/v1/api-keys/{o['api_key'].pk}/revoke/"),
    ("get", lambda o: f"/api/v1/members/{o['membership'].pk}/"),
]
DASHBOARD_OBJECT_URLS = [
    ("get", lambda o: reverse("dashboard:api-key-detail", args=[o["api_key"].pk])),
    ("post", lambda o: reverse("dashboard:api-key-revoke", args=[o["api_key"].pk])),
]


@pytest.mark.parametrize("method,url_of", API_OBJECT_URLS)
def test_api_object_urls_of_b_are_404_for_a_session(tenant_a, b_objects, method, url_of):
    response = getattr(tenant_a.client("owner"), method)(url_of(b_objects))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method,url_of", API_OBJECT_URLS)
def test_api_object_urls_of_b_are_404_for_a_key(tenant_a, b_objects, method, url_of):
    response = getattr(tenant_a.key_client("admin"), method)(url_of(b_objects))
    assert response.status_code == 404


@pytest.mark.parametrize("method,url_of", DASHBOARD_OBJECT_URLS)
def test_dashboard_object_urls_of_b_are_404_for_a(tenant_a, b_objects, method, url_of):
    response = getattr(tenant_a.client("owner"), method)(url_of(b_objects))
    assert response.status_code == 404


def test_b_key_is_not_revoked_by_a(tenant_a, b_objects):
    tenant_a.client("owner").post(reverse("dashboard:api-key-revoke", args=[b_objects["api_key"].pk]))
    tenant_a.key_client("admin").post(f"/api/v1/api-keys/{b_objects['api_key'].pk}/revoke/")
    assert ApiKey.unscoped.get(pk=b_objects["api_key"].pk).revoked_at is None


def test_lists_never_include_b_rows(tenant_a, tenant_b, b_objects):
    keys = tenant_a.client("owner").get("/api/v1/api-keys/").json()["results"]
    assert b_objects["api_key"].pk not in {k["id"] for k in keys}
    members = tenant_a.client("owner").get("/api/v1/members/").json()["results"]
    assert {m["username"] for m in members} == {u.username for u in tenant_a.users.values()}
    page = tenant_a.client("owner").get(reverse("dashboard:api-keys")).content.decode()
    assert "B&#x27;s key" not in page and "B's key" not in page


def test_a_key_cannot_act_for_b_even_when_asking(tenant_a, tenant_b):
    """The key names the tenant; a session's tenant switch to a foreign tenant is ignored too."""
    response = tenant_a.key_client("admin").get("/api/v1/tenant/", HTTP_X_TENANT=tenant_b.tenant.slug)
    assert response.json()["slug"] == tenant_a.tenant.slug
    client = tenant_a.client("owner")
    client.post(reverse("dashboard:switch-tenant"), {"tenant_id": tenant_b.tenant.pk})
    assert client.get("/api/v1/tenant/").json()["slug"] == tenant_a.tenant.slug


def test_member_of_two_tenants_switches_between_them(tenant_a, tenant_b):
    from shitu_platform.tenancy.services import membership_set

    user = tenant_a.users["member"]
    membership_set(tenant=tenant_b.tenant, user=user, role="viewer")
    client = tenant_a.client("member")
    assert client.get("/api/v1/tenant/").json()["slug"] == tenant_a.tenant.slug
    client.post(reverse("dashboard:switch-tenant"), {"tenant_id": tenant_b.tenant.pk})
    switched = client.get("/api/v1/tenant/").json()
    assert switched["slug"] == tenant_b.tenant.slug and switched["role"] == "viewer"


def test_views_cannot_override_get_queryset():
    from rest_framework import viewsets

    from shitu_platform.tenancy.scoping import TenantScopedAPIMixin

    with pytest.raises(TypeError, match="safely_get_queryset"):
        class LeakyViewSet(TenantScopedAPIMixin, viewsets.GenericViewSet):  # noqa: F841
            scoped_model = ApiKey

            def get_queryset(self):
                return ApiKey.unscoped.all()
