"""Staff admin over models: versions (global ones for superusers only) and each tenant's active extractor. Read-only:
switch and roll back go through the dashboard or the API (modelhub.services)."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from modelhub.models import ActiveModel, ModelVersion
from shitu_platform.admin import TenantOwnedAdmin, admin_link, admin_list_link
from shitu_platform.tenancy.scoping import staff_visible

TENANT_FILTER = ("tenant", admin.RelatedOnlyFieldListFilter)


@admin.register(ModelVersion)
class ModelVersionAdmin(TenantOwnedAdmin):
    """Global models (no tenant) are shown to superusers only; other staff see their tenants' fine-tunes."""

    list_display = ["key", "kind", "scope", "parent_link", "created_at"]
    list_filter = ["kind", TENANT_FILTER]
    search_fields = ["key", "tenant__name"]
    list_select_related = ["tenant", "parent"]
    fields = ["key", "kind", "scope", "parent_link", "children", "storage_prefix", "manifest", "metrics", "created_at"]
    readonly_fields = ["scope", "parent_link", "children"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # not tenant-owned (a global row has no tenant), so it has no `unscoped` manager: the same staff door
        return staff_visible(ModelVersion.objects.all(), request)

    @admin.display(description="scope", ordering="tenant__name")
    def scope(self, version: ModelVersion) -> SafeString | str:
        return admin_link(version.tenant) if version.tenant_id else "global"

    @admin.display(description="based on")
    def parent_link(self, version: ModelVersion) -> SafeString | str:
        return admin_link(version.parent) if version.parent_id else "-"

    @admin.display(description="fine-tunes of it")
    def children(self, version: ModelVersion) -> SafeString:
        return admin_list_link(ModelVersion, "models based on this one", parent__id__exact=version.pk)


@admin.register(ActiveModel)
class ActiveModelAdmin(TenantOwnedAdmin):
    list_display = ["tenant_link", "extractor_link", "previous", "switched_at"]
    search_fields = ["tenant__name", "extractor__key"]
    list_select_related = ["tenant", "extractor", "previous_extractor"]
    fields = ["tenant_link", "extractor_link", "previous", "switched_at"]
    readonly_fields = ["tenant_link", "extractor_link", "previous"]

    @admin.display(description="extractor")
    def extractor_link(self, active: ActiveModel) -> SafeString | str:
        return admin_link(active.extractor) if active.extractor_id else "platform default"

    @admin.display(description="roll back to")
    def previous(self, active: ActiveModel) -> SafeString | str:
        if active.previous_extractor_id:
            return admin_link(active.previous_extractor)
        return "platform default" if active.previous_is_default else "-"
