"""REST endpoints for galleries and products (tenant-scoped)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from galleries import imports, selectors, services
from recognition.engine.errors import FileTooLarge
from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.serializers import (
    GalleryHealthSerializer,
    GallerySerializer,
    ImageUploadSerializer,
    ImportJobSerializer,
    ImportStartSerializer,
    ProductSerializer,
    PurgeResultSerializer,
    PurgeSerializer,
    ReferenceImageMoveSerializer,
    ReferenceImageSerializer,
)
from shitu_platform.parsers import SafeJSONParser
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin


class GalleryViewSet(TenantScopedAPIMixin, viewsets.ModelViewSet):
    scoped_model = Gallery
    serializer_class = GallerySerializer
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]
    action_roles = {"purge": Role.ADMIN}

    @extend_schema(request={"multipart/form-data": ImportStartSerializer}, responses={202: ImportJobSerializer})
    @action(detail=True, methods=["post"], url_path="imports")
    def start_import(self, request: Request, pk: Any = None) -> Response:
        """Import a zip of images; returns 202 and the job to poll. Re-importing the same zip changes nothing."""
        gallery = self.get_object()
        params = ImportStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["archive"]
        if upload.size > settings.SHITU_MAX_IMPORT_UPLOAD_BYTES:
            raise FileTooLarge(f"the archive is {upload.size} bytes, limit {settings.SHITU_MAX_IMPORT_UPLOAD_BYTES}")
        user = request.user if getattr(request.user, "pk", None) else None
        job = imports.import_start(gallery=gallery, archive=upload.read(), archive_name=upload.name or "", created_by=user)
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: GalleryHealthSerializer})
    @action(detail=True, methods=["get"], url_path="health")
    def health(self, request: Request, pk: Any = None) -> Response:
        """The gallery's latest health report: confusable products, near-duplicate photos under two labels, products
        with too few photos, photos their product does not verify. Stored, not computed on request."""
        gallery = self.get_object()
        return Response(GalleryHealthSerializer(selectors.gallery_health_summary(gallery=gallery)).data)

    @extend_schema(request=PurgeSerializer, responses={200: PurgeResultSerializer})
    @action(detail=True, methods=["post"], url_path="purge")
    def purge(self, request: Request, pk: Any = None) -> Response:
        """Delete the gallery's products whose attributes pass `filter`, with their images and vectors, at once.
        Without `force: true` nothing is deleted: the answer counts what would go. Needs the admin role."""
        gallery = self.get_object()
        params = PurgeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        outcome = services.products_purge(gallery=gallery, attribute_filter=params.validated_data["filter"],
                                          force=params.validated_data["force"])
        return Response(PurgeResultSerializer({"filter": str(params.validated_data["filter"]), "products": outcome.products,
                                               "images": outcome.images, "deleted": outcome.deleted}).data)

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return selectors.galleries_with_counts(queryset)

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        gallery = services.gallery_create(tenant=self.tenant, name=data["name"], description=data.get("description", ""),
                                          detect_references=data.get("detect_references", False))
        # read back with the counts, so the 201 has the same fields as the list (a client may cache either)
        serializer.instance = selectors.galleries_with_counts(Gallery.objects.for_tenant(self.tenant)).get(pk=gallery.pk)

    def perform_update(self, serializer: Any) -> None:
        gallery, data = serializer.instance, serializer.validated_data
        if "name" in data or "description" in data:
            services.gallery_update(gallery=gallery, name=data.get("name", gallery.name),
                                    description=data.get("description", gallery.description))
        if "detect_references" in data:
            services.gallery_settings_update(gallery=gallery, detect_references=data["detect_references"])
        serializer.instance = selectors.galleries_with_counts(Gallery.objects.for_tenant(self.tenant)).get(pk=gallery.pk)

    def perform_destroy(self, instance: Gallery) -> None:
        services.gallery_delete(gallery=instance)


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
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ImageUploadSerializer},
        responses={201: ReferenceImageSerializer(many=True)},
        description="Upload one or more reference images (field `image`, repeatable). Same bytes twice are stored once.",
    )
    # the answer is the plain list of stored images, not a page: no pagination in the schema
    @action(detail=True, methods=["post"], url_path="images", pagination_class=None)
    def upload_images(self, request: Request, pk: Any = None) -> Response:
        product = self.get_object()
        params = ImageUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        files = request.FILES.getlist("image")
        if not files:
            raise serializers.ValidationError({"image": "Attach at least one file in the `image` field."})
        for upload in files:  # refuse before reading: a huge upload never enters memory
            if upload.size > settings.SHITU_MAX_IMAGE_BYTES:
                raise FileTooLarge(f"{upload.name} is {upload.size} bytes, limit {settings.SHITU_MAX_IMAGE_BYTES}")
        outcomes = [
            services.reference_image_upload(product=product, data=upload.read(), bbox=params.validated_data.get("bbox"))
            for upload in files
        ]
        body = [dict(ReferenceImageSerializer(o.reference_image).data, created=o.created) for o in outcomes]
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Product) -> None:
        services.product_delete(product=instance)  # the dashboard's path: the version bump drops cached vectors

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        params = self.request.query_params
        if params.get("gallery", "").isdigit():
            queryset = queryset.filter(gallery_id=int(params["gallery"]))
        attributes = dict(item.split(":", 1) for item in params.getlist("attr") if ":" in item)
        if any(not selectors.ATTRIBUTE_KEY.fullmatch(key) for key in attributes):
            raise serializers.ValidationError({"attr": "Attribute keys are letters, digits, '-' and '_' (one level)."})
        return selectors.products_with_counts(selectors.products_filtered(queryset, label=params.get("label"), attributes=attributes))

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        product = services.product_create(gallery=data["gallery"], label=data["label"], sku=data.get("sku", ""),
                                          display_name=data.get("display_name", ""), attributes=data.get("attributes"))
        serializer.instance = selectors.products_with_counts(Product.objects.for_tenant(self.tenant)).get(pk=product.pk)

    def perform_update(self, serializer: Any) -> None:
        product, data = serializer.instance, serializer.validated_data
        services.product_update(product=product, label=data.get("label", product.label), sku=data.get("sku", product.sku),
                                display_name=data.get("display_name", product.display_name),
                                attributes=data.get("attributes", product.attributes))
        serializer.instance = selectors.products_with_counts(Product.objects.for_tenant(self.tenant)).get(pk=product.pk)


class ReferenceImageViewSet(TenantScopedAPIMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    scoped_model = ReferenceImage
    serializer_class = ReferenceImageSerializer

    def perform_destroy(self, instance: ReferenceImage) -> None:
        services.reference_image_delete(reference_image=instance)

    @extend_schema(request=ReferenceImageMoveSerializer, responses={200: ReferenceImageSerializer})
    @action(detail=True, methods=["post"], url_path="move")
    def move(self, request: Request, pk: Any = None) -> Response:
        """File the image under another product of its gallery; its vectors stay, recognitions answer the new label
        at once. A product of another gallery is a 400 `reference_image_not_movable`."""
        reference_image = self.get_object()
        params = ReferenceImageMoveSerializer(data=request.data, context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        moved = services.reference_image_move(reference_image=reference_image, product=params.validated_data["product"])
        return Response(ReferenceImageSerializer(moved).data)

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        params: Any = self.request.query_params
        for field in ("gallery", "product"):
            if params.get(field, "").isdigit():
                queryset = queryset.filter(**{f"{field}_id": int(params[field])})
        if params.get("status") in ReferenceImage.Status.values:
            queryset = queryset.filter(status=params["status"])
        return queryset


class ImportJobViewSet(TenantScopedAPIMixin, viewsets.ReadOnlyModelViewSet):
    scoped_model = ImportJob
    serializer_class = ImportJobSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        gallery = self.request.query_params.get("gallery", "")
        return queryset.filter(gallery_id=int(gallery)) if gallery.isdigit() else queryset
