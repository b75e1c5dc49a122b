"""Per-tenant rate limits (shared by every web process through the Redis cache): 429 with Retry-After."""
from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from shitu_platform.tenancy.context import tenant_context


class TenantRateThrottle(SimpleRateThrottle):
    """Requests per minute per tenant; views may name a stricter `throttle_tenant_field` (e.g. recognitions)."""

    scope = "tenant"

    def __init__(self) -> None:  # the rate comes from the tenant row, not settings
        self.history: list[float] = []

    def allow_request(self, request: Any, view: Any) -> bool:
        context = tenant_context(request) if request.user and request.user.is_authenticated else None
        if context is None:
            return True
        field = getattr(view, "throttle_tenant_field", "requests_per_minute")
        if request.method in ("GET", "HEAD", "OPTIONS"):
            field = "requests_per_minute"
        self.num_requests, self.duration = getattr(context.tenant, field), 60
        self.rate = f"{self.num_requests}/min"
        self.key = f"throttle:{field}:{context.tenant.pk}"
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.key
