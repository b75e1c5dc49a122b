"""The staff admin: its branding, and the base of every admin over tenant-owned rows.

Staff see rows through `staff_visible(Model.unscoped.all())`: superusers every tenant, other staff only the
tenants they administer. Rows are written by their tenant through the dashboard or the API (where the services
keep indexes and stored files in step), so these admins are views with links, not editors, unless they say otherwise.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from shitu_platform.tenancy.scoping import staff_visible

admin.site.site_header = "ShiTu Platform staff"
admin.site.site_title = "ShiTu Platform staff"
admin.site.index_title = "Tenants, galleries, recognitions and models"


def admin_link(row: Model | None, text: Any = None) -> SafeString | str:
    """A link to `row`'s change page in this admin, or "-" when there is none."""
    if row is None:
        return "-"
    url = reverse(f"admin:{row._meta.app_label}_{row._meta.model_name}_change", args=[row.pk])
    return format_html('<a href="{}">{}</a>', url, row if text is None else text)


def admin_list_link(model: type[Model], text: Any, **filters: Any) -> SafeString:
    """A link to `model`'s change list narrowed by `filters` (e.g. a gallery's products)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), text)


class TenantOwnedAdmin(admin.ModelAdmin):
    """Read-only admin over a tenant-owned model: a tenant filter (only tenants the staff member sees), the tenant as
    a link, no add, change or delete."""

    list_filter: Any = [("tenant", admin.RelatedOnlyFieldListFilter)]
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_visible(self.model.unscoped.all(), request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_link(self, row: Model) -> SafeString | str:
        return admin_link(row.tenant)  # type: ignore[attr-defined]
