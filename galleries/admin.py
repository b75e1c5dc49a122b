"""Staff admin over galleries: galleries, products, reference images (with their picture), embeddings, imports and
calibrations, each linked to its tenant, gallery and product. Read-only: tenants change them through the dashboard
or the API, whose services keep the search index and the stored files in step."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from galleries import selectors
from galleries.models import Embedding, Gallery, GalleryCalibration, GalleryHealth, ImportJob, Product, ReferenceImage
from galleries.thumbnails import thumbnail_jpeg
from shitu_platform.admin import TenantOwnedAdmin, admin_link, admin_list_link
from shitu_platform.tenancy.admin import tenant_admin_column_add, tenant_owned_count
from shitu_platform.tenancy.models import Tenant

TENANT_FILTER = ("tenant", admin.RelatedOnlyFieldListFilter)
GALLERY_FILTER = ("gallery", admin.RelatedOnlyFieldListFilter)


@admin.display(description="galleries")
def tenant_galleries(tenant: Tenant) -> SafeString:
    """The tenant admin's link to the tenant's galleries."""
    return admin_list_link(Gallery, tenant_owned_count(Gallery, tenant), tenant__id__exact=tenant.pk)


tenant_admin_column_add(column=tenant_galleries)


@admin.register(Gallery)
class GalleryAdmin(TenantOwnedAdmin):
    list_display = ["name", "tenant_link", "products", "images", "index_version", "created_at"]
    search_fields = ["name", "description", "tenant__name", "tenant__slug"]
    fields = ["name", "description", "tenant_link", "products", "images", "imports", "index_version", "created_at"]
    readonly_fields = ["tenant_link", "products", "images", "imports"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.galleries_with_counts(super().get_queryset(request)).select_related("tenant")

    @admin.display(description="products", ordering="product_count")
    def products(self, gallery: Gallery) -> SafeString:
        return admin_list_link(Product, gallery.product_count, gallery__id__exact=gallery.pk)

    @admin.display(description="reference images", ordering="image_count")
    def images(self, gallery: Gallery) -> SafeString:
        return admin_list_link(ReferenceImage, gallery.image_count, gallery__id__exact=gallery.pk)

    @admin.display(description="imports")
    def imports(self, gallery: Gallery) -> SafeString:
        return admin_list_link(ImportJob, "imports of this gallery", gallery__id__exact=gallery.pk)


@admin.register(Product)
class ProductAdmin(TenantOwnedAdmin):
    list_display = ["label", "display_name", "sku", "gallery_link", "tenant_link", "images", "created_at"]
    list_filter = [TENANT_FILTER, GALLERY_FILTER]
    search_fields = ["label", "display_name", "sku", "gallery__name", "tenant__name"]
    fields = ["label", "display_name", "sku", "attributes", "gallery_link", "tenant_link", "images", "created_at"]
    readonly_fields = ["gallery_link", "tenant_link", "images"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.products_with_counts(super().get_queryset(request)).select_related("tenant", "gallery")

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, product: Product) -> SafeString | str:
        return admin_link(product.gallery)

    @admin.display(description="reference images", ordering="image_count")
    def images(self, product: Product) -> SafeString:
        return admin_list_link(ReferenceImage, product.image_count, product__id__exact=product.pk)


@admin.register(ReferenceImage)
class ReferenceImageAdmin(TenantOwnedAdmin):
    list_display = ["id", "thumbnail", "product_link", "gallery_link", "status", "dimensions", "size_bytes", "tenant_link",
                    "created_at"]
    list_filter = ["status", TENANT_FILTER, GALLERY_FILTER]
    search_fields = ["product__label", "checksum", "gallery__name", "tenant__name"]
    list_select_related = ["tenant", "gallery", "product"]
    fields = ["picture", "product_link", "gallery_link", "tenant_link", "status", "failure_reason", "dimensions", "bbox",
              "size_bytes", "checksum", "object_key", "local_features_key", "import_link", "embeddings", "created_at"]
    readonly_fields = ["picture", "product_link", "gallery_link", "tenant_link", "dimensions", "import_link", "embeddings"]

    def get_urls(self) -> list:
        picture = self.admin_site.admin_view(self.picture_view)
        return [path("<int:reference_image_id>/picture.jpg", picture, name="galleries_referenceimage_picture"),
                *super().get_urls()]

    def picture_view(self, request: HttpRequest, reference_image_id: int) -> HttpResponse:
        reference_image = get_object_or_404(self.get_queryset(request), pk=reference_image_id)  # the staff door first
        jpeg = thumbnail_jpeg(reference_image=reference_image)
        if jpeg is None:
            raise Http404("The stored image cannot be read.")
        return HttpResponse(jpeg, content_type="image/jpeg")

    def _img(self, reference_image: ReferenceImage, max_side: int) -> SafeString:
        url = reverse("admin:galleries_referenceimage_picture", args=[reference_image.pk])
        return format_html('<img src="{}" alt="reference image {}" loading="lazy" style="max-width:{}px;max-height:{}px;'
                           'border-radius:4px">', url, reference_image.pk, max_side, max_side)

    @admin.display(description="picture")
    def thumbnail(self, reference_image: ReferenceImage) -> SafeString:
        return self._img(reference_image, 64)

    @admin.display(description="picture")
    def picture(self, reference_image: ReferenceImage) -> SafeString:
        return self._img(reference_image, 256)

    @admin.display(description="product", ordering="product__label")
    def product_link(self, reference_image: ReferenceImage) -> SafeString | str:
        return admin_link(reference_image.product, reference_image.product.label)

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, reference_image: ReferenceImage) -> SafeString | str:
        return admin_link(reference_image.gallery)

    @admin.display(description="import")
    def import_link(self, reference_image: ReferenceImage) -> SafeString | str:
        return admin_link(reference_image.import_job, f"import #{reference_image.import_job_id}")

    @admin.display(description="width × height")
    def dimensions(self, reference_image: ReferenceImage) -> str:
        return f"{reference_image.width} × {reference_image.height}" if reference_image.width else "-"

    @admin.display(description="embeddings")
    def embeddings(self, reference_image: ReferenceImage) -> SafeString:
        return admin_list_link(Embedding, reference_image.embeddings.count(), reference_image__id__exact=reference_image.pk)


@admin.register(Embedding)
class EmbeddingAdmin(TenantOwnedAdmin):
    """Which extractor embedded which image; the 512 floats themselves are left out."""

    list_display = ["id", "reference_image_link", "gallery_link", "model_key", "tenant_link", "created_at"]
    list_filter = ["model_key", TENANT_FILTER, GALLERY_FILTER]
    search_fields = ["model_key", "reference_image__product__label", "gallery__name"]
    list_select_related = ["tenant", "gallery", "reference_image__product"]
    fields = ["reference_image_link", "gallery_link", "tenant_link", "model_key", "box", "created_at"]
    readonly_fields = ["reference_image_link", "gallery_link", "tenant_link"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("vector")

    @admin.display(description="reference image")
    def reference_image_link(self, embedding: Embedding) -> SafeString | str:
        reference_image = embedding.reference_image
        return admin_link(reference_image, f"#{reference_image.pk} ({reference_image.product.label})")

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, embedding: Embedding) -> SafeString | str:
        return admin_link(embedding.gallery)


@admin.register(ImportJob)
class ImportJobAdmin(TenantOwnedAdmin):
    list_display = ["id", "archive_name", "gallery_link", "status", "percent", "imported", "skipped", "failed", "attempts",
                    "tenant_link", "created_at", "finished_at"]
    list_filter = ["status", TENANT_FILTER, GALLERY_FILTER]
    search_fields = ["archive_name", "gallery__name", "tenant__name", "failure_reason"]
    list_select_related = ["tenant", "gallery"]
    date_hierarchy = "created_at"
    fields = ["archive_name", "gallery_link", "tenant_link", "status", "percent", "total_rows", "next_row", "imported",
              "skipped", "failed", "images", "row_errors", "failure_reason", "attempts", "heartbeat_at", "created_by",
              "created_at", "finished_at"]
    readonly_fields = ["gallery_link", "tenant_link", "percent", "images"]

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, job: ImportJob) -> SafeString | str:
        return admin_link(job.gallery)

    @admin.display(description="progress")
    def percent(self, job: ImportJob) -> str:
        return f"{job.progress:.0%}"

    @admin.display(description="reference images")
    def images(self, job: ImportJob) -> SafeString:
        return admin_list_link(ReferenceImage, "images of this import", import_job__id__exact=job.pk)


@admin.register(GalleryCalibration)
class GalleryCalibrationAdmin(TenantOwnedAdmin):
    list_display = ["gallery_link", "model_key", "threshold", "images", "tenant_link", "fitted_at"]
    list_filter = ["model_key", TENANT_FILTER]
    search_fields = ["gallery__name", "model_key"]
    list_select_related = ["tenant", "gallery"]
    fields = ["gallery_link", "tenant_link", "model_key", "threshold", "images", "calibration", "fitted_at"]
    readonly_fields = ["gallery_link", "tenant_link", "threshold"]

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, calibration: GalleryCalibration) -> SafeString | str:
        return admin_link(calibration.gallery)

    @admin.display(description="no-match threshold")
    def threshold(self, calibration: GalleryCalibration) -> str:
        value = calibration.calibration.get("threshold")
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


# --- gallery health ---


@admin.register(GalleryHealth)
class GalleryHealthAdmin(TenantOwnedAdmin):
    list_display = ["gallery_link", "status", "findings", "model_key", "tenant_link", "computed_at"]
    list_filter = ["status", TENANT_FILTER]
    search_fields = ["gallery__name", "model_key"]
    list_select_related = ["tenant", "gallery"]
    fields = ["gallery_link", "tenant_link", "status", "model_key", "index_version", "findings", "failure_reason",
              "requested_at", "computed_at", "report"]
    readonly_fields = ["gallery_link", "tenant_link", "findings"]

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, health: GalleryHealth) -> SafeString | str:
        return admin_link(health.gallery)

    @admin.display(description="findings")
    def findings(self, health: GalleryHealth) -> str:
        counts = health.report.get("counts") or {}
        return ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items()) or "-"
