from typing import Any

from django.http import HttpRequest

from shitu_platform.tenancy.context import tenant_context
from shitu_platform.tenancy.selectors import memberships_for_user


def tenant(request: HttpRequest) -> dict[str, Any]:
    """Dashboard templates show the active tenant and a switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    if getattr(user, "pk", None) is None:  # an API key, not a person (e.g. the browsable API asked for HTML)
        return {"tenant_context": tenant_context(request), "user_memberships": []}
    context = tenant_context(request)
    return {"tenant_context": context, "user_memberships": list(memberships_for_user(user=user))}
