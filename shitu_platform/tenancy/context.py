"""Resolving the tenant of a request, once: from its API key, or from the session user's membership."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from shitu_platform.tenancy import rls
from shitu_platform.tenancy.models import ApiKey, Role, Tenant, role_at_least
from shitu_platform.tenancy.selectors import memberships_for_user

SESSION_TENANT_KEY = "active_tenant_id"
_CACHE_ATTR = "_shitu_tenant_context"
_SCOPED_ATTR = "_shitu_rls_scoped"


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant
    role: str
    user: AbstractBaseUser | None
    api_key: ApiKey | None

    def allows(self, required_role: str) -> bool:
        return role_at_least(self.role, required_role)


class NoTenant(PermissionDenied):
    """The caller is signed in (or holds a key) but belongs to no active tenant."""


class RoleTooLow(PermissionDenied):
    """The caller's role in the tenant is below what the view needs."""


def require_role(context: TenantContext | None, required_role: str) -> TenantContext:
    """The one role check, for API views and dashboard views alike; each surface only words the refusal."""
    if context is None:
        raise NoTenant("You are not a member of any tenant.")
    if not context.allows(required_role):
        raise RoleTooLow(f"This needs the '{required_role}' role.")
    return context


def tenant_context(request: Any) -> TenantContext | None:
    """The request's tenant context (None when unauthenticated or not a member of any tenant).

    Works for Django and DRF requests; the answer is cached on the underlying HttpRequest. In a request that
    `RowLevelSecurityMiddleware` scoped, the database connection is narrowed to the tenant found.
    """
    http_request: HttpRequest = getattr(request, "_request", request)
    if hasattr(http_request, _CACHE_ATTR):
        return getattr(http_request, _CACHE_ATTR)
    context = _resolve(request, http_request)
    setattr(http_request, _CACHE_ATTR, context)
    if context is not None and getattr(http_request, _SCOPED_ATTR, False):
        rls.narrow_request_to_tenant(context.tenant.pk)
    return context


def mark_request_scoped(request: HttpRequest) -> None:
    """The middleware restores the scope after this request, so resolving its tenant may narrow the connection."""
    setattr(request, _SCOPED_ATTR, True)


def select_tenant(request: HttpRequest, tenant_id: int) -> bool:
    """Switch the session's active tenant; False (and no change) when the user is not a member."""
    if not any(m.tenant_id == tenant_id for m in memberships_for_user(user=request.user)):
        return False
    request.session[SESSION_TENANT_KEY] = tenant_id
    if hasattr(request, _CACHE_ATTR):
        delattr(request, _CACHE_ATTR)
    return True


def _resolve(request: Any, http_request: HttpRequest) -> TenantContext | None:
    api_key = getattr(request, "auth", None)
    if isinstance(api_key, ApiKey):
        return TenantContext(tenant=api_key.tenant, role=api_key.role, user=None, api_key=api_key)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = memberships_for_user(user=user)
    if not memberships:
        return None
    wanted = http_request.session.get(SESSION_TENANT_KEY) if hasattr(http_request, "session") else None
    chosen = next((m for m in memberships if m.tenant_id == wanted), memberships[0])
    return TenantContext(tenant=chosen.tenant, role=Role(chosen.role), user=user, api_key=None)
