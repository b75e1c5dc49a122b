"""Dashboard pages for the tenant: overview, tenant switch, API keys."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView, TemplateView
from django.views.generic.detail import SingleObjectMixin

from shitu_platform.overview import tenant_overview
from shitu_platform.tenancy.authentication import ApiKeyAuthentication
from shitu_platform.tenancy.context import select_tenant
from shitu_platform.tenancy.models import ApiKey, Role
from shitu_platform.tenancy.roles import KEY_ROLES, role_capabilities
from shitu_platform.tenancy.scoping import TenantDashboardMixin, TenantScopedDashboardMixin
from shitu_platform.tenancy.services import api_key_create, api_key_revoke


class HomeView(TenantDashboardMixin, TemplateView):
    """The tenant's overview: figures and panels that the apps above the platform register (shitu_platform.overview)."""

    template_name = "dashboard/home.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(overview=tenant_overview(tenant=self.tenant), **kwargs)


class SwitchTenantView(TenantDashboardMixin, View):
    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            tenant_id = int(request.POST.get("tenant_id", ""))
        except ValueError:
            tenant_id = -1
        if not select_tenant(request, tenant_id):
            messages.error(request, "You are not a member of that tenant.")
        return redirect("dashboard:home")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)  # Django's CharField refuses NUL characters
    role = forms.ChoiceField(choices=[(Role.ADMIN, "admin"), (Role.MEMBER, "member"), (Role.VIEWER, "viewer")])


class _KeyUsageMixin:
    """How a key is sent (the scheme the authentication class reads) and what each role may do with it."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(  # type: ignore[misc]
            auth_scheme=ApiKeyAuthentication.keyword, key_roles=KEY_ROLES, role_capabilities=role_capabilities(), **kwargs
        )


class ApiKeyListView(TenantScopedDashboardMixin, _KeyUsageMixin, ListView):
    scoped_model = ApiKey
    required_role = Role.ADMIN
    template_name = "dashboard/api_keys.html"
    context_object_name = "api_keys"

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ApiKeyForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give the key a name (plain text, up to 100 characters) and a role.")
            return redirect("dashboard:api-keys")
        name, role = form.cleaned_data["name"], form.cleaned_data["role"]
        api_key, raw_key = api_key_create(tenant=self.tenant, name=name, role=role, created_by=request.user)
        # The plaintext is rendered once, in this response, and never stored.
        self.object_list = self.get_queryset()
        context = self.get_context_data(new_key=raw_key, new_api_key=api_key)
        return self.render_to_response(context)


class ApiKeyDetailView(TenantScopedDashboardMixin, _KeyUsageMixin, DetailView):
    scoped_model = ApiKey
    required_role = Role.ADMIN
    template_name = "dashboard/api_key_detail.html"
    context_object_name = "api_key"


class ApiKeyRevokeView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    scoped_model = ApiKey
    required_role = Role.ADMIN

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseRedirect:
        api_key = api_key_revoke(api_key=self.get_object())
        messages.success(request, f"Key “{api_key.name}” revoked.")
        return HttpResponseRedirect(reverse("dashboard:api-keys"))
