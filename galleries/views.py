"""Dashboard pages for galleries: list and create, a gallery's products and imports, a product's images, thumbnails.

Uploads and imports go from the browser straight to the REST API (session auth + CSRF); these views render
pages, create galleries, delete images and serve thumbnails. Every object comes through the tenant-scoped mixin.
"""
from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, HttpResponseRedirect
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView
from django.views.generic.detail import SingleObjectMixin

from galleries import selectors
from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.services import reference_image_delete
from galleries.thumbnails import placeholder_jpeg, thumbnail_jpeg
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedDashboardMixin, scoped

READY, PENDING, FAILED = ReferenceImage.Status.READY, ReferenceImage.Status.PENDING, ReferenceImage.Status.FAILED
MIN_READY_IMAGES = 2  # fewer ready reference images than this and recognition of the product is unreliable
THUMBNAILS_PER_PRODUCT = 3
PRODUCTS_PER_PAGE = 50
IMAGES_PER_PAGE = 60
RECENT_IMPORTS = 10
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class _WriteRoleMixin:
    """Pages are open to viewers; their forms (any unsafe method) need `write_role`, checked here, not only hidden."""

    write_role: str = Role.MEMBER

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in SAFE_METHODS and not self.tenant_context.allows(self.write_role):  # type: ignore[attr-defined]
            raise PermissionDenied(f"This needs the '{self.write_role}' role.")
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(can_write=self.tenant_context.allows(self.write_role), **kwargs)  # type: ignore[misc,attr-defined]


class GalleryCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=2000, required=False)


class GalleryListView(TenantScopedDashboardMixin, _WriteRoleMixin, ListView):
    scoped_model = Gallery
    template_name = "galleries/gallery_list.html"
    context_object_name = "galleries"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return _galleries_with_status_counts(queryset, tenant=self.tenant)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("form", GalleryCreateForm())
        return super().get_context_data(**kwargs)

    def post(self, request: HttpRequest) -> HttpResponse:
        form = GalleryCreateForm(request.POST)
        if form.is_valid():
            name = form.cleaned_data["name"].strip()
            try:
                with transaction.atomic():
                    gallery = Gallery.objects.create(tenant=self.tenant, name=name, description=form.cleaned_data["description"])
            except IntegrityError:  # the (tenant, name) constraint: the name is taken
                form.add_error("name", f"A gallery named “{name}” already exists.")
            else:
                messages.success(request, f"Gallery “{gallery.name}” created. Import a zip of product photos to fill it.")
                return HttpResponseRedirect(reverse("dashboard:gallery", args=[gallery.pk]))
        self.object_list = self.get_queryset()
        return self.render_to_response(self.get_context_data(form=form), status=400)


class GalleryDetailView(TenantScopedDashboardMixin, _WriteRoleMixin, DetailView):
    scoped_model = Gallery
    template_name = "galleries/gallery_detail.html"
    context_object_name = "gallery"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        gallery: Gallery = self.object
        query = self.request.GET.get("q", "").strip()
        attention_only = self.request.GET.get("attention") == "1"
        label, attributes = parse_product_filter(query)
        products = _products_with_coverage(scoped(Product, self.tenant).filter(gallery=gallery)).order_by("label", "pk")
        attention = Q(ready_count__lt=MIN_READY_IMAGES) | Q(failed_count__gt=0)
        filtered = selectors.products_filtered(products, label=label, attributes=attributes)
        if attention_only:
            filtered = filtered.filter(attention)
        page = Paginator(filtered, PRODUCTS_PER_PAGE).get_page(self.request.GET.get("page"))
        status_counts = dict(
            scoped(ReferenceImage, self.tenant).filter(gallery=gallery).order_by().values_list("status").annotate(n=Count("pk"))
        )
        return super().get_context_data(
            products_page=page,
            products=_with_thumbnails(page.object_list, tenant=self.tenant),
            query=query,
            attention_only=attention_only,
            filtered=bool(query) or attention_only,
            stats={
                "products": products.count(),
                "images": sum(status_counts.values()),
                "ready": status_counts.get(READY, 0),
                "pending": status_counts.get(PENDING, 0),
                "failed": status_counts.get(FAILED, 0),
                "attention": products.filter(attention).count(),
            },
            min_ready=MIN_READY_IMAGES,
            recent_imports=scoped(ImportJob, self.tenant).filter(gallery=gallery)[:RECENT_IMPORTS],
            import_url=reverse("gallery-start-import", args=[gallery.pk]),
            import_poll_url=reverse("import-job-list") + "{id}/",  # filled in by galleries.js
            **kwargs,
        )


class ProductDetailView(TenantScopedDashboardMixin, _WriteRoleMixin, DetailView):
    scoped_model = Product
    template_name = "galleries/product_detail.html"
    context_object_name = "product"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return _products_with_coverage(queryset.select_related("gallery"))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        product: Product = self.object
        images = scoped(ReferenceImage, self.tenant).filter(product=product).order_by("-created_at", "-pk")
        page = Paginator(images, IMAGES_PER_PAGE).get_page(self.request.GET.get("page"))
        return super().get_context_data(
            images_page=page,
            min_ready=MIN_READY_IMAGES,
            needs_attention=product.ready_count < MIN_READY_IMAGES or product.failed_count > 0,
            upload_url=reverse("product-upload-images", args=[product.pk]),
            **kwargs,
        )


class ReferenceImageDeleteView(TenantScopedDashboardMixin, _WriteRoleMixin, SingleObjectMixin, View):
    scoped_model = ReferenceImage
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        product_id = reference_image.product_id
        reference_image_delete(reference_image=reference_image)
        messages.success(request, "Image deleted.")
        return HttpResponseRedirect(reverse("dashboard:gallery-product", args=[product_id]))


class ReferenceImageThumbnailView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """A JPEG of at most 256 px; an image that cannot be decoded gets a grey placeholder, never an error page."""

    scoped_model = ReferenceImage
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        # The object under a checksum never changes, so neither does its thumbnail.
        etag = f'"{reference_image.checksum[:32]}-thumb"'
        if request.headers.get("If-None-Match") == etag:
            response: HttpResponse = HttpResponseNotModified()
        else:
            data = thumbnail_jpeg(reference_image=reference_image)
            if data is None:
                response = HttpResponse(placeholder_jpeg(), content_type="image/jpeg")
                response["Cache-Control"] = "private, max-age=60"  # may be a passing storage outage: retry soon
                return response
            response = HttpResponse(data, content_type="image/jpeg")
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=3600"
        return response


def parse_product_filter(query: str) -> tuple[str, dict[str, str]]:
    """`brand:Acme "cola zero"` → label contains "cola zero", attribute brand = Acme. Quotes keep spaces together."""
    try:
        tokens = shlex.split(query)
    except ValueError:  # an unbalanced quote: take the words as they are
        tokens = query.split()
    words, attributes = [], {}
    for token in tokens:
        key, separator, value = token.partition(":")
        # A key with "__" would become an ORM lookup on the JSON field; treat such tokens as label text.
        if separator and key and value and "__" not in key:
            attributes[key] = value
        else:
            words.append(token)
    return " ".join(words), attributes


def _count_subquery(queryset: QuerySet) -> Coalesce:
    counted = queryset.filter(gallery=OuterRef("pk")).order_by().values("gallery").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _galleries_with_status_counts(queryset: QuerySet, *, tenant) -> QuerySet:
    # One subquery per count: joining products and images together would multiply rows in big galleries.
    images = scoped(ReferenceImage, tenant)
    return queryset.annotate(
        product_count=_count_subquery(scoped(Product, tenant)),
        image_count=_count_subquery(images),
        ready_count=_count_subquery(images.filter(status=READY)),
        pending_count=_count_subquery(images.filter(status=PENDING)),
        failed_count=_count_subquery(images.filter(status=FAILED)),
    )


def _products_with_coverage(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        ready_count=Count("reference_images", filter=Q(reference_images__status=READY)),
        pending_count=Count("reference_images", filter=Q(reference_images__status=PENDING)),
        failed_count=Count("reference_images", filter=Q(reference_images__status=FAILED)),
    )


def _with_thumbnails(products: Any, *, tenant) -> list[Product]:
    """The page's products, each with `thumbnails`: its first few images, fetched in one query."""
    products = list(products)
    ranked = (
        scoped(ReferenceImage, tenant)
        .filter(product__in=products)
        .annotate(rank=Window(RowNumber(), partition_by=[F("product_id")], order_by=[F("created_at").asc(), F("pk").asc()]))
        .filter(rank__lte=THUMBNAILS_PER_PRODUCT)
        .only("pk", "product_id", "status", "failure_reason")
    )
    by_product: dict[int, list[ReferenceImage]] = {}
    for reference_image in ranked:
        by_product.setdefault(reference_image.product_id, []).append(reference_image)
    for product in products:
        product.thumbnails = by_product.get(product.pk, [])
    return products
