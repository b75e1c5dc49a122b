"""Request-wide middleware: the row-level-security scope of each request, NUL characters refused before any view,
and dashboard times in the tenant's zone."""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone

from shitu_platform.errors import error_body
from shitu_platform.tenancy import rls
from shitu_platform.tenancy.context import mark_request_scoped, tenant_context

DASHBOARD_PREFIX = "/dashboard/"
ADMIN_PREFIX = "/admin/"


class RowLevelSecurityMiddleware:
    """Every request starts in the `none` scope, where PostgreSQL shows no tenant-owned row; `tenant_context()`
    narrows it to the request's tenant once that is known (API keys are only read when DRF authenticates, inside
    the view). The staff admin runs in the system scope: staff cross tenants through `staff_visible`. The scope
    before the request is restored afterwards."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(ADMIN_PREFIX):
            with rls.system_scope():
                return self.get_response(request)
        with rls.no_scope():
            mark_request_scoped(request)
            return self.get_response(request)


class RejectNulCharactersMiddleware:
    """PostgreSQL cannot compare NUL characters and no legitimate client sends them. (Credentials with odd characters
    are simply invalid: the API-key check answers 401.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if b"\x00" in unquote_to_bytes(query):
            message = "NUL characters are not allowed in the query string."
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid_characters", message), status=400)
            return HttpResponseBadRequest(message)
        return self.get_response(request)


class TenantTimeZoneMiddleware:
    """Dashboard pages show times in the active tenant's zone. The API stays in UTC (ISO 8601 with offset), and the
    tenant is not resolved here for API requests: their API key is only known once DRF authenticates them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = self._tenant_zone(request) if request.path.startswith(DASHBOARD_PREFIX) else None
        if zone is None:
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    @staticmethod
    def _tenant_zone(request: HttpRequest) -> ZoneInfo | None:
        if not request.user.is_authenticated:
            return None
        context = tenant_context(request)
        if context is None:
            return None
        try:
            return ZoneInfo(context.tenant.time_zone)
        except (ZoneInfoNotFoundError, ValueError):  # a name written around the validator: show UTC, not a 500
            return None
