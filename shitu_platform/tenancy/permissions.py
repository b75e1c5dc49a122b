"""DRF permission: the caller belongs to a tenant, with a role high enough for the method."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from rest_framework import exceptions, permissions

from shitu_platform.tenancy.context import require_role, tenant_context
from shitu_platform.tenancy.models import Role


def required_role_for(view: Any, method: str) -> str:
    """Views declare `read_role` / `write_role` (and `action_roles` per viewset action)."""
    action = getattr(view, "action", None)
    action_roles = getattr(view, "action_roles", {})
    if action in action_roles:
        return action_roles[action]
    if method in permissions.SAFE_METHODS:
        return getattr(view, "read_role", Role.VIEWER)
    return getattr(view, "write_role", Role.MEMBER)


class HasTenantRole(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        if getattr(view, "tenant_free", False):
            return True
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        try:
            require_role(tenant_context(request), required_role_for(view, request.method))
        except PermissionDenied as refusal:  # the API words it as its own 403, message kept
            raise exceptions.PermissionDenied(str(refusal)) from refusal
        return True
