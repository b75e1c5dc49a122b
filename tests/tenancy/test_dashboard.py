"""Dashboard pages: login, the tenant's overview, API keys."""
import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_dashboard_redirects_anonymous_users_to_login(client):
    response = client.get(reverse("dashboard:home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_login_reaches_the_tenant_overview(client, tenant_a):
    response = client.post(reverse("login"), {"username": tenant_a.owner.username, "password": tenant_a.password}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert tenant_a.tenant.name in page and "owner" in page


def test_wrong_password_shows_an_error(client, tenant_a):
    response = client.post(reverse("login"), {"username": tenant_a.owner.username, "password": "nope"})
    assert response.status_code == 200 and "didn't match" in response.content.decode()


def test_dashboard_creates_a_key_shows_it_once(tenant_a):
    client = tenant_a.client("admin")
    created = client.post(reverse("dashboard:api-keys"), {"name": "Android", "role": "member"}).content.decode()
    assert 'data-testid="new-key"' in created and "shitu_" in created
    listed = client.get(reverse("dashboard:api-keys")).content.decode()
    assert "Android" in listed and 'data-testid="new-key"' not in listed


def test_api_keys_page_needs_admin_role(tenant_a):
    assert tenant_a.client("member").get(reverse("dashboard:api-keys")).status_code == 403
