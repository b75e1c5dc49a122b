"""Django admin for platform staff: tenants, memberships and API keys (hashes only, never the key)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from shitu_platform.admin import admin_link, admin_list_link
from shitu_platform.tenancy.models import ApiKey, Membership, Tenant
from shitu_platform.tenancy.scoping import staff_visible


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "time_zone", "members", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["is_active", "time_zone"]
    inlines = [MembershipInline]
    readonly_fields = ["members", "api_keys"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_visible(super().get_queryset(request), request, tenant_field="pk")

    @admin.display(description="members")
    def members(self, tenant: Tenant) -> SafeString:
        return admin_list_link(Membership, tenant_owned_count(Membership, tenant), tenant__id__exact=tenant.pk)

    @admin.display(description="API keys")
    def api_keys(self, tenant: Tenant) -> SafeString:
        return admin_list_link(ApiKey, tenant_owned_count(ApiKey, tenant), tenant__id__exact=tenant.pk)


def tenant_admin_column_add(*, column: Callable[[Tenant], Any]) -> None:
    """Show `column` (a function of the tenant, e.g. a link to its galleries) in the tenant list and page; the apps
    above tenancy add theirs from their own admin module, so this one imports none of them."""
    TenantAdmin.list_display = [*TenantAdmin.list_display[:-1], column, TenantAdmin.list_display[-1]]
    TenantAdmin.readonly_fields = [*TenantAdmin.readonly_fields, column]


def tenant_owned_count(model: Any, tenant: Tenant) -> int | str:
    """How many rows of a tenant-owned `model` the tenant has ("-" on the add page, before the tenant exists)."""
    return model.objects.for_tenant(tenant).count() if tenant.pk else "-"


def membership_add_form(request: HttpRequest) -> type[forms.ModelForm]:
    """The add form, with the tenants this staff member administers (a class per request: the choices differ)."""

    class MembershipAddForm(forms.ModelForm):
        tenant = forms.ModelChoiceField(queryset=staff_visible(Tenant.objects.all(), request, tenant_field="pk"))

        class Meta:
            model = Membership
            fields = ["user", "role"]
            exclude = ["tenant"]  # not editable on the model (rows never move between tenants): set from the field above

        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            tenant, user = cleaned.get("tenant"), cleaned.get("user")
            if tenant is not None and user is not None:
                if Membership.objects.for_tenant(tenant).filter(user=user).exists():
                    raise forms.ValidationError(f"{user} is already a member of {tenant}: change the role on that membership.")
                self.instance.tenant = tenant
            return cleaned

    return MembershipAddForm


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant_link", "role", "created_at"]
    list_filter = ["role", ("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__email", "tenant__name"]
    list_select_related = ["user", "tenant"]
    autocomplete_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_visible(Membership.unscoped.all(), request)

    def get_form(self, request: HttpRequest, obj: Membership | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = membership_add_form(request)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        return ["tenant", "user", "role"] if obj is None else ["tenant_link", "user", "role", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        return [] if obj is None else ["tenant_link", "user", "created_at"]

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_link(self, membership: Membership) -> SafeString | str:
        return admin_link(membership.tenant)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "prefix", "role", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", ("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name"]
    readonly_fields = ["tenant", "prefix", "key_hash", "created_by", "created_at", "last_used_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_visible(ApiKey.unscoped.all(), request)

    def has_add_permission(self, request: HttpRequest) -> bool:  # keys are created by their tenant, so the plaintext reaches only them
        return False
