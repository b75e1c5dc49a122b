"""Django admin for platform staff: tenants, memberships and API keys (hashes only, never the key)."""
from django.contrib import admin

from shitu_platform.tenancy.models import ApiKey, Membership, Tenant
from shitu_platform.tenancy.scoping import staff_visible


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["is_active"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return staff_visible(super().get_queryset(request), request, tenant_field="pk")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", ("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "tenant__name"]

    def get_queryset(self, request):
        return staff_visible(super().get_queryset(request), request)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "prefix", "role", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", ("tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name"]

    def get_queryset(self, request):
        return staff_visible(super().get_queryset(request), request)
    readonly_fields = ["tenant", "prefix", "key_hash", "created_by", "created_at", "last_used_at"]

    def has_add_permission(self, request):  # keys are created by their tenant, so the plaintext reaches only them
        return False
