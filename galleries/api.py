"""REST endpoints for galleries and products (tenant-scoped)."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets

from galleries import selectors
from galleries.models import Gallery, Product, ReferenceImage
from galleries.serializers import GallerySerializer, ProductSerializer, ReferenceImageSerializer
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin


class GalleryViewSet(TenantScopedAPIMixin, viewsets.ModelViewSet):
    scoped_model = Gallery
    serializer_class = GallerySerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return selectors.galleries_with_counts(queryset)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("gallery", OpenApiTypes.INT, description="only this gallery's products"),
            OpenApiParameter("label", OpenApiTypes.STR, description="label contains (case-insensitive)"),
            OpenApiParameter("attr", OpenApiTypes.STR, many=True, description="attribute filter `key:value`, repeatable"),
        ]
    )
)
class ProductViewSet(TenantScopedAPIMixin, viewsets.ModelViewSet):
    scoped_model = Product
    serializer_class = ProductSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        params = self.request.query_params
        if params.get("gallery", "").isdigit():
            queryset = queryset.filter(gallery_id=int(params["gallery"]))
        attributes = dict(item.split(":", 1) for item in params.getlist("attr") if ":" in item)
        return selectors.products_with_counts(selectors.products_filtered(queryset, label=params.get("label"), attributes=attributes))


class ReferenceImageViewSet(TenantScopedAPIMixin, viewsets.ReadOnlyModelViewSet):
    scoped_model = ReferenceImage
    serializer_class = ReferenceImageSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        params: Any = self.request.query_params
        for field in ("gallery", "product"):
            if params.get(field, "").isdigit():
                queryset = queryset.filter(**{f"{field}_id": int(params[field])})
        if params.get("status") in ReferenceImage.Status.values:
            queryset = queryset.filter(status=params["status"])
        return queryset
