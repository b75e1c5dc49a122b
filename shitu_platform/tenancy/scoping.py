"""The one door to tenant-owned rows, for API views and dashboard views alike.

Views name a `scoped_model`; the mixins build the queryset from `scoped_model.objects.for_tenant()`
and let subclasses narrow it in `safely_get_queryset`. Overriding `get_queryset` is refused at
class creation, so a view cannot drop the tenant filter by accident. `Model.objects` itself fails
closed (`UnscopedQueryError`); a read that must cross tenants (staff tools, workers, sweeps) names
`Model.unscoped`, whose callers tests/tenancy/test_fail_closed.py keeps to a written list.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from shitu_platform.tenancy.context import NoTenant, TenantContext, require_role, tenant_context
from shitu_platform.tenancy.models import Role, Tenant, TenantOwnedModel


class _ScopedQuerysetMixin:
    scoped_model: type[TenantOwnedModel]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides get_queryset; override safely_get_queryset instead")

    @property
    def tenant_context(self) -> TenantContext:
        context = tenant_context(self.request)  # type: ignore[attr-defined]
        if context is None:
            raise PermissionDenied("no tenant")
        return context

    @property
    def tenant(self) -> Tenant:
        return self.tenant_context.tenant

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation inspects views without a request
            return self.scoped_model.objects.none()
        return self.safely_get_queryset(self.scoped_model.objects.for_tenant(self.tenant))

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset


class TenantScopedAPIMixin(_ScopedQuerysetMixin):
    """For DRF generic views and viewsets; new rows get the request's tenant."""

    def perform_create(self, serializer: Any) -> None:
        serializer.save(tenant=self.tenant)


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TenantDashboardMixin(LoginRequiredMixin):
    """For dashboard views: a logged-in member of some tenant, with at least `required_role`.

    Pages whose forms need more than reading name `write_role`: every unsafe method is checked against it
    here (not only hidden in the template), and templates get `can_write` to hide what the role may not do.
    """

    required_role: str = Role.VIEWER
    write_role: str | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        try:
            context = require_role(tenant_context(request), self.required_role)
        except NoTenant as refusal:  # the dashboard shows "no tenant" as a missing page, a low role as a 403
            raise Http404(str(refusal)) from refusal
        if self.write_role is not None and request.method not in SAFE_METHODS:
            require_role(context, self.write_role)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        if self.write_role is not None:
            kwargs.setdefault("can_write", self.tenant_context.allows(self.write_role))
        return super().get_context_data(**kwargs)  # type: ignore[misc]

    @property
    def tenant_context(self) -> TenantContext:
        return tenant_context(self.request)  # type: ignore[attr-defined,return-value]

    @property
    def tenant(self) -> Tenant:
        return self.tenant_context.tenant


class TenantScopedDashboardMixin(TenantDashboardMixin, _ScopedQuerysetMixin):
    """Dashboard views over one tenant-owned model (DetailView, ListView, ...)."""


def staff_visible(queryset: QuerySet, request: HttpRequest, *, tenant_field: str = "tenant") -> QuerySet:
    """The admin's door: superusers see every tenant; other staff only tenants where they are admin or owner."""
    if request.user.is_superuser:
        return queryset
    from shitu_platform.tenancy.models import Membership

    tenant_ids = Membership.unscoped.filter(user=request.user, role__in=[Role.ADMIN, Role.OWNER]).values_list("tenant_id", flat=True)
    return queryset.filter(**{f"{tenant_field}__in": list(tenant_ids)})
