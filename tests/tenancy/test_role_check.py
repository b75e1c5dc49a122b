"""One role check (`require_role`) behind both doors: the API's permission class and the dashboard's mixin.

The same member meets the same rule and the same sentence on either surface; only the wrapping differs
(the API's JSON 403, the dashboard's 403 page, and "no tenant" as the dashboard's 404).
"""
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from shitu_platform.tenancy.context import NoTenant, RoleTooLow, TenantContext, require_role
from shitu_platform.tenancy.models import Role

pytestmark = pytest.mark.django_db


def test_require_role_passes_at_or_above_and_refuses_below(tenant_a):
    context = TenantContext(tenant=tenant_a.tenant, role=Role.MEMBER, user=tenant_a.users[Role.MEMBER], api_key=None)
    assert require_role(context, Role.VIEWER) is context
    assert require_role(context, Role.MEMBER) is context
    with pytest.raises(RoleTooLow, match="This needs the 'admin' role."):
        require_role(context, Role.ADMIN)
    with pytest.raises(NoTenant):
        require_role(None, Role.VIEWER)


def test_api_and_dashboard_refuse_a_member_admin_work_with_the_same_words(tenant_a):
    client = tenant_a.client("member")
    api = client.get("/api/v1/api-keys/")
    assert api.status_code == 403
    assert api.json()["error"] == {"code": "permission_denied", "message": "This needs the 'admin' role."}
    page = client.get(reverse("dashboard:api-keys"))
    assert page.status_code == 403
    assert "This needs the &#x27;admin&#x27; role." in page.content.decode()


def test_an_api_key_meets_the_same_rule(tenant_a):
    response = tenant_a.key_client("viewer").post("/api/v1/galleries/", {"name": "Shelf"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This needs the 'member' role."


def test_a_user_of_no_tenant_is_refused_on_both_surfaces():
    loner = get_user_model().objects.create_user("loner", password="correct-horse-battery")
    client = Client()
    client.force_login(loner)
    api = client.get("/api/v1/galleries/")
    assert api.status_code == 403
    assert api.json()["error"]["message"] == "You are not a member of any tenant."
    assert client.get(reverse("dashboard:api-keys")).status_code == 404
