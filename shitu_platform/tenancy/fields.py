"""Serializer fields that only accept ids of the caller's own tenant."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shitu_platform.tenancy.context import tenant_context
from shitu_platform.tenancy.models import TenantOwnedModel


@extend_schema_field(OpenApiTypes.INT)
class TenantScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign id in a payload is checked against the request's tenant: another tenant's id reads as 'does not exist'."""

    def __init__(self, model: type[TenantOwnedModel], **kwargs: Any) -> None:
        self.scoped_model = model
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        context = tenant_context(request) if request is not None else None
        if context is None:
            return self.scoped_model.objects.none()
        return self.scoped_model.objects.for_tenant(context.tenant)
