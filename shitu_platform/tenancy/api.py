"""REST endpoints for the caller's tenant, its API keys and members."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shitu_platform.tenancy.context import tenant_context
from shitu_platform.tenancy.models import ApiKey, Membership, Role
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin
from shitu_platform.tenancy.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    MembershipSerializer,
    TenantSerializer,
)
from shitu_platform.tenancy.services import api_key_create, api_key_revoke


class CurrentTenantView(APIView):
    @extend_schema(responses=TenantSerializer)
    def get(self, request: Request) -> Response:
        """The tenant the credentials belong to, and the caller's role in it: what a client checks after login or
        when given a key (a key acts only in its own tenant, with its own role)."""
        context = tenant_context(request)
        return Response(TenantSerializer(context.tenant, context={"role": context.role}).data)


class ApiKeyViewSet(TenantScopedAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """API keys of the caller's tenant. Managing keys needs the admin role."""

    scoped_model = ApiKey
    serializer_class = ApiKeySerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        """Create a key for a program (a till, an app); its role is at most yours. The secret `key` is in this answer
        only: store it, send it as `Authorization: Api-Key <key>`."""
        params = ApiKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        role = params.validated_data["role"]
        if not self.tenant_context.allows(role):
            raise exceptions.PermissionDenied("A key cannot have a higher role than its creator.")
        creator = self.tenant_context.user
        api_key, raw_key = api_key_create(tenant=self.tenant, name=params.validated_data["name"], role=role, created_by=creator)
        body = dict(ApiKeySerializer(api_key).data, key=raw_key)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: Any = None) -> Response:
        """Revoke a key at once: requests with it answer 401 from now on. Its record stays, marked revoked."""
        api_key = api_key_revoke(api_key=self.get_object())
        return Response(ApiKeySerializer(api_key).data)


class MembershipViewSet(TenantScopedAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scoped_model = Membership
    serializer_class = MembershipSerializer
    read_role = Role.ADMIN

    def safely_get_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("user")
