"""Log in through the real login form in Chromium and manage API keys."""
import pytest

from tests.support.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_log_in_and_see_the_tenant_dashboard(page, live_server, tenant_a, screenshot):
    page.goto(f"{live_server.url}/dashboard/")
    assert "/accounts/login/" in page.url
    screenshot("login")
    log_in(page, live_server.url, tenant_a.owner.username, tenant_a.password, wait=False)
    page.wait_for_selector("[data-testid=page-title]")
    assert page.inner_text("[data-testid=page-title]") == tenant_a.tenant.name
    assert tenant_a.tenant.name in page.inner_text("header")
    screenshot("dashboard-home")


def test_wrong_password_stays_on_login_with_an_error(page, live_server, tenant_a):
    log_in(page, live_server.url, tenant_a.owner.username, "wrong password", wait=False)
    assert page.is_visible("[role=alert]") and "/accounts/login/" in page.url


def test_create_and_revoke_an_api_key(page, live_server, tenant_a, screenshot):
    log_in(page, live_server.url, tenant_a.users["admin"].username, tenant_a.password, wait=False)
    page.wait_for_selector("[data-testid=page-title]")
    page.click("text=API keys")
    page.fill("input[name=name]", "Shelf scanner app")
    page.click("text=Create key")
    secret = page.inner_text("[data-testid=new-key] code")
    assert secret.startswith("shitu_")
    screenshot("api-key-created")
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("text=revoked")
    assert "Shelf scanner app" in page.inner_text("table")
    assert secret not in page.content()
