"""Styled 403/404/500 pages with a way back to the dashboard, JSON under /api/, and the favicon."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils.functional import SimpleLazyObject

import shitu_platform.urls
from shitu_platform import views

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("a bug in a view")


def _forbidden(request):
    raise PermissionDenied("This needs the 'admin' role.")


# This module is the URL conf of the tests that need a view that fails: the platform's routes and handlers, plus two.
urlpatterns = [path("boom/", _boom), path("forbidden/", _forbidden), path("api/v1/boom/", _boom),
               *shitu_platform.urls.urlpatterns]
handler403 = shitu_platform.urls.handler403
handler404 = shitu_platform.urls.handler404
handler500 = shitu_platform.urls.handler500


def _assert_styled(response, status: int, heading: str) -> str:
    page = response.content.decode()
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert 'data-testid="error-page"' in page and heading in page
    assert 'href="/dashboard/"' in page and "Back to the dashboard" in page
    assert "/static/shitu/app.css" in page and "/static/shitu/favicon.svg" in page  # the base layout's look
    return page


def test_unknown_url_renders_the_styled_404_for_anonymous_and_signed_in_users(tenant_a):
    _assert_styled(Client().get("/no/such/page/"), 404, "Page not found")
    page = _assert_styled(tenant_a.client("member").get("/dashboard/no-such-page/"), 404, "Page not found")
    assert 'class="sidebar"' in page and tenant_a.tenant.name in page  # inside the dashboard's layout when signed in


def test_unknown_api_url_stays_json():
    response = Client().get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_role_refusal_renders_the_styled_403(tenant_a):
    page = _assert_styled(tenant_a.client("viewer").get("/dashboard/api-keys/"), 403, "Not allowed")
    assert "This needs the &#x27;admin&#x27; role." in page


@pytest.mark.urls(__name__)
def test_a_view_that_raises_renders_the_styled_500():
    response = Client(raise_request_exception=False).get("/boom/")
    page = _assert_styled(response, 500, "Something went wrong")
    assert "a bug in a view" not in page  # nothing of the exception reaches the browser
    api = Client(raise_request_exception=False).get("/api/v1/boom/")
    assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"


@pytest.mark.urls(__name__)
def test_permission_denied_outside_the_dashboard_uses_the_403_page():
    _assert_styled(Client().get("/forbidden/"), 403, "Not allowed")


def test_the_500_handler_reads_neither_the_user_nor_the_database():
    """What broke may be the database: the 500 page must render without it (no session, user or tenant lookup)."""
    request = RequestFactory().get("/dashboard/galleries/")

    def user_lookup():
        raise AssertionError("the 500 page looked up the user")

    request.user = SimpleLazyObject(user_lookup)
    with CaptureQueriesContext(connection) as queries:
        response = views.server_error(request)
    assert response.status_code == 500 and b"Something went wrong" in response.content
    assert len(queries) == 0


def test_favicon_is_an_svg_static_file_and_favicon_ico_does_not_404():
    redirect = Client().get("/favicon.ico")
    assert redirect.status_code == 302 and redirect["Location"] == "/static/shitu/favicon.svg"
    icon = Client().get(redirect["Location"])
    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(icon.streaming_content if icon.streaming else [icon.content])
