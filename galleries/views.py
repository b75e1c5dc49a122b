"""Dashboard pages for galleries: list and create, a gallery's products and imports, a product's images, thumbnails.

Uploads and imports go from the browser straight to the REST API (session auth + CSRF); these views render
pages, create, rename and delete galleries (deletes confirmed on a page that shows what goes), change their settings,
edit and delete products, delete images, correct their product boxes and serve previews. Writes go through
galleries.services, the same functions the REST API uses.
Every object comes through the tenant-scoped mixin.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView
from django.views.generic.detail import SingleObjectMixin

from galleries import selectors
from galleries.errors import InvalidBoundingBox
from galleries.forms import GalleryEditForm, ProductEditForm
from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.services import (
    GalleryNameTaken,
    ProductLabelTaken,
    gallery_create,
    gallery_delete,
    gallery_settings_update,
    gallery_update,
    product_delete,
    product_update,
    reference_image_box_set,
    ReferenceImageNotMovable,
    reference_image_delete,
    reference_image_move,
)
from galleries.thumbnails import THUMBNAIL_MAX_SIDE, placeholder_jpeg, thumbnail_jpeg
from shitu_platform.errors import PlatformError, error_body
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedDashboardMixin

READY, PENDING, FAILED = ReferenceImage.Status.READY, ReferenceImage.Status.PENDING, ReferenceImage.Status.FAILED
MIN_READY_IMAGES = 2  # fewer ready reference images than this and recognition of the product is unreliable
THUMBNAILS_PER_PRODUCT = 3
PRODUCTS_PER_PAGE = 50
IMAGES_PER_PAGE = 60
PREVIEW_MAX_SIDE = 1024  # the box editor's picture: big enough to draw a box to a few pixels
RECENT_IMPORTS = 10
MOVE_CHOICES = 1000  # products offered by an image's "Move to" list (the API takes any id)


class GalleryCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=2000, required=False)


class GalleryListView(TenantScopedDashboardMixin, ListView):
    write_role = Role.MEMBER
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
                gallery = gallery_create(tenant=self.tenant, name=name, description=form.cleaned_data["description"])
            except GalleryNameTaken:
                form.add_error("name", f"A gallery named “{name}” already exists.")
            else:
                messages.success(request, f"Gallery “{gallery.name}” created. Import a zip of product photos to fill it.")
                return HttpResponseRedirect(reverse("dashboard:gallery", args=[gallery.pk]))
        self.object_list = self.get_queryset()
        return self.render_to_response(self.get_context_data(form=form), status=400)


class GalleryDetailView(TenantScopedDashboardMixin, DetailView):
    write_role = Role.MEMBER
    scoped_model = Gallery
    template_name = "galleries/gallery_detail.html"
    context_object_name = "gallery"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        gallery: Gallery = self.object
        query = self.request.GET.get("q", "").strip()
        attention_only = self.request.GET.get("attention") == "1"
        label, attributes = parse_product_filter(query)
        products = _products_with_coverage(Product.objects.for_tenant(self.tenant).filter(gallery=gallery)).order_by("label", "pk")
        attention = Q(ready_count__lt=MIN_READY_IMAGES) | Q(failed_count__gt=0)
        filtered = selectors.products_filtered(products, label=label, attributes=attributes)
        if attention_only:
            filtered = filtered.filter(attention)
        page = Paginator(filtered, PRODUCTS_PER_PAGE).get_page(self.request.GET.get("page"))
        status_counts = dict(
            ReferenceImage.objects.for_tenant(self.tenant).filter(gallery=gallery).order_by().values_list("status").annotate(n=Count("pk"))
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
            recent_imports=ImportJob.objects.for_tenant(self.tenant).filter(gallery=gallery)[:RECENT_IMPORTS],
            import_url=reverse("gallery-start-import", args=[gallery.pk]),
            import_poll_url=reverse("import-job-list") + "{id}/",  # filled in by galleries.js
            **kwargs,
        )


class ProductDetailView(TenantScopedDashboardMixin, DetailView):
    write_role = Role.MEMBER
    scoped_model = Product
    template_name = "galleries/product_detail.html"
    context_object_name = "product"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return _products_with_coverage(queryset.select_related("gallery"))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        product: Product = self.object
        images = ReferenceImage.objects.for_tenant(self.tenant).filter(product=product).order_by("-created_at", "-pk")
        page = Paginator(images, IMAGES_PER_PAGE).get_page(self.request.GET.get("page"))
        page.object_list = _with_boxes(list(page.object_list), tenant=self.tenant, gallery=product.gallery)
        reembedding = sum(1 for image in page.object_list if image.box.reembedding)
        return super().get_context_data(
            images_page=page,
            # the page script polls while this is not 0: pending images, and saved boxes the worker has yet to embed
            waiting_count=product.pending_count + reembedding,
            min_ready=MIN_READY_IMAGES,
            needs_attention=product.ready_count < MIN_READY_IMAGES or product.failed_count > 0,
            upload_url=reverse("product-upload-images", args=[product.pk]),
            move_choices=list(selectors.products_beside(product=product, limit=MOVE_CHOICES)),
            **kwargs,
        )


class ReferenceImageDeleteView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    write_role = Role.MEMBER
    scoped_model = ReferenceImage
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        product_id = reference_image.product_id
        reference_image_delete(reference_image=reference_image)
        messages.success(request, "Image deleted.")
        return HttpResponseRedirect(reverse("dashboard:gallery-product", args=[product_id]))


class ReferenceImageMoveForm(forms.Form):
    product = forms.IntegerField(min_value=1)


class ReferenceImageMoveView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    write_role = Role.MEMBER
    """The product page's "Move to" form: files one photo under another product of the gallery, back to the page."""

    scoped_model = ReferenceImage
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        back = HttpResponseRedirect(reverse("dashboard:gallery-product", args=[reference_image.product_id]))
        form = ReferenceImageMoveForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose the product to move the image to.")
            return back
        target = Product.objects.for_tenant(self.tenant).filter(pk=form.cleaned_data["product"]).first()
        if target is None:  # another tenant's product, or gone
            raise Http404("No such product.")
        try:
            reference_image_move(reference_image=reference_image, product=target)
        except ReferenceImageNotMovable:
            messages.error(request, "An image can only move to another product of its own gallery.")
            return back
        messages.success(request, f"Image moved to “{target.label}”.")
        return back


class ReferenceImageBoxForm(forms.Form):
    """`bbox`: JSON [xmin, ymin, xmax, ymax] in the stored image's pixels; empty for the whole image."""

    bbox = forms.CharField(required=False, max_length=200)

    def clean_bbox(self) -> list[float] | None:
        text = self.cleaned_data["bbox"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("bbox is not JSON") from None
        numbers = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not numbers or len(value) != 4:
            raise forms.ValidationError("bbox is [xmin, ymin, xmax, ymax]: four numbers")
        return [float(v) for v in value]


class ReferenceImageBoxView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    write_role = Role.MEMBER
    """The box editor saves here: JSON answers, 202 once the box is saved and its re-embedding queued."""

    scoped_model = ReferenceImage
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        reference_image = self.get_object()
        form = ReferenceImageBoxForm(request.POST)
        try:
            if not form.is_valid():
                raise InvalidBoundingBox(" ".join(form.errors["bbox"]))
            reference_image = reference_image_box_set(reference_image=reference_image, bbox=form.cleaned_data["bbox"])
        except PlatformError as error:
            return JsonResponse(error_body(error.code, error.message, error.details), status=error.http_status)
        return JsonResponse({"id": reference_image.pk, "bbox": reference_image.bbox, "reembedding": True}, status=202)


class GallerySettingsForm(forms.Form):
    detect_references = forms.BooleanField(required=False)


class GallerySettingsView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    write_role = Role.MEMBER
    scoped_model = Gallery
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        form = GallerySettingsForm(request.POST)
        detect = form.is_valid() and form.cleaned_data["detect_references"]  # an unticked box is simply absent
        gallery_settings_update(gallery=gallery, detect_references=detect)
        messages.success(request, "New reference photos will be cropped to their detected product." if detect
                         else "New reference photos will be embedded whole.")
        return HttpResponseRedirect(reverse("dashboard:gallery", args=[gallery.pk]))


class GalleryEditView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """Rename a gallery or change its description; the page itself needs the write role too."""

    scoped_model = Gallery
    required_role = Role.MEMBER
    http_method_names = ["get", "post"]
    template_name = "galleries/gallery_edit.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        form = GalleryEditForm(gallery=gallery, initial={"name": gallery.name, "description": gallery.description})
        return render(request, self.template_name, {"gallery": gallery, "form": form})

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        form = GalleryEditForm(request.POST, gallery=gallery)
        if form.is_valid():
            try:
                gallery_update(gallery=gallery, name=form.cleaned_data["name"], description=form.cleaned_data["description"])
            except GalleryNameTaken:  # a gallery took the name since the form checked it
                form.add_error("name", f"A gallery named “{form.cleaned_data['name']}” already exists.")
            else:
                messages.success(request, f"Gallery renamed to “{gallery.name}”." if "name" in form.changed_data
                                 else "Gallery saved.")
                return HttpResponseRedirect(reverse("dashboard:gallery", args=[gallery.pk]))
        gallery.refresh_from_db()  # the page shows the saved name, not the refused one
        return render(request, self.template_name, {"gallery": gallery, "form": form}, status=400)


class GalleryDeleteView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """GET shows what would go; only POST deletes (rows now, stored objects with the orphan sweep)."""

    scoped_model = Gallery
    required_role = Role.MEMBER
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        counts = selectors.gallery_delete_counts(gallery=gallery)
        return render(request, "galleries/gallery_confirm_delete.html", {"gallery": gallery, "counts": counts})

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        name = gallery.name
        gallery_delete(gallery=gallery)
        messages.success(request, f"Gallery “{name}” deleted with its products and images.")
        return HttpResponseRedirect(reverse("dashboard:galleries"))


class ProductEditView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    scoped_model = Product
    required_role = Role.MEMBER
    http_method_names = ["get", "post"]
    template_name = "galleries/product_edit.html"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("gallery")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        return render(request, self.template_name, {"product": product, "form": ProductEditForm.for_product(product)})

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        form = ProductEditForm(request.POST, product=product)
        if form.is_valid():
            try:
                product_update(product=product, **form.cleaned_data)
            except ProductLabelTaken:  # another product took the label since the form checked it
                form.add_error("label", "This gallery already has a product with this label.")
            else:
                messages.success(request, "Product saved.")
                return HttpResponseRedirect(reverse("dashboard:gallery-product", args=[product.pk]))
        product.refresh_from_db()
        return render(request, self.template_name, {"product": product, "form": form}, status=400)


class ProductDeleteView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """GET shows what would go; only POST deletes."""

    scoped_model = Product
    required_role = Role.MEMBER
    http_method_names = ["get", "post"]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("gallery")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        counts = selectors.product_delete_counts(product=product)
        return render(request, "galleries/product_confirm_delete.html", {"product": product, "counts": counts})

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        label, gallery_id = product.label, product.gallery_id
        product_delete(product=product)
        messages.success(request, f"Product “{label}” deleted with its images.")
        return HttpResponseRedirect(reverse("dashboard:gallery", args=[gallery_id]))


class ReferenceImageThumbnailView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """A JPEG of at most 256 px; an image that cannot be decoded gets a grey placeholder, never an error page."""

    scoped_model = ReferenceImage
    http_method_names = ["get", "head"]
    max_side = THUMBNAIL_MAX_SIDE

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        # The object under a checksum never changes, so neither does its thumbnail.
        etag = f'"{reference_image.checksum[:32]}-{self.max_side}"'
        if request.headers.get("If-None-Match") == etag:
            response: HttpResponse = HttpResponseNotModified()
        else:
            data = thumbnail_jpeg(reference_image=reference_image, max_side=self.max_side)
            if data is None:
                response = HttpResponse(placeholder_jpeg(), content_type="image/jpeg")
                response["Cache-Control"] = "private, max-age=60"  # may be a passing storage outage: retry soon
                return response
            response = HttpResponse(data, content_type="image/jpeg")
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=3600"
        return response


class ReferenceImagePreviewView(ReferenceImageThumbnailView):
    """The same picture, larger, for the box editor."""

    max_side = PREVIEW_MAX_SIDE


@dataclass(frozen=True)
class ImageBox:
    """What a reference image's card draws: the box its serving vector came from (percent CSS over the photo),
    and a saved box that the worker has not embedded yet."""

    embedded: bool  # the gallery's serving model has a vector of the image
    whole: bool  # ... made from the whole photo
    label: str  # its size, or "whole image"
    corners: str  # where it is, for the label's tooltip
    style: str
    saved_style: str  # "" unless a saved box is still being re-embedded
    editor_box: str  # "xmin,ymin,xmax,ymax" the editor starts from; "" for the whole image

    @property
    def reembedding(self) -> bool:
        return bool(self.saved_style)


def _with_boxes(images: list[ReferenceImage], *, tenant, gallery: Gallery) -> list[ReferenceImage]:
    """The images, each with `box` (ImageBox) from its serving model's vector, fetched in one query."""
    in_use = selectors.reference_image_boxes(tenant=tenant, reference_image_ids=[i.pk for i in images],
                                             model_key=selectors.serving_model_key(gallery=gallery))
    for image in images:
        embedded = image.pk in in_use
        box = in_use.get(image.pk)
        whole = box is None or _is_full_frame(box, image)
        reembedding = embedded and image.status == READY and image.bbox is not None and image.bbox != box
        start = image.bbox if image.bbox is not None else box
        image.box = ImageBox(
            embedded=embedded, whole=whole,
            label="whole image" if whole else "{:.0f} × {:.0f} px".format(box[2] - box[0], box[3] - box[1]),
            corners="" if whole else "{:.0f},{:.0f} – {:.0f},{:.0f} px".format(*box),
            style="" if whole else _box_style(box, image),
            saved_style=_box_style(image.bbox, image) if reembedding else "",
            editor_box="" if start is None or _is_full_frame(start, image) else ",".join(f"{v:.10g}" for v in start),
        )
    return images


def _is_full_frame(box: list[float], image: ReferenceImage) -> bool:
    return all(abs(float(v) - edge) <= 0.5 for v, edge in zip(box, (0, 0, image.width or 0, image.height or 0)))


def _box_style(box: list[float], image: ReferenceImage) -> str:
    """CSS placing the box over the photo in percent, so it follows whatever size the photo is shown at."""
    if not (image.width and image.height):
        return ""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    return (f"left:{xmin / image.width * 100:.3f}%;top:{ymin / image.height * 100:.3f}%;"
            f"width:{(xmax - xmin) / image.width * 100:.3f}%;height:{(ymax - ymin) / image.height * 100:.3f}%")


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
    images = ReferenceImage.objects.for_tenant(tenant)
    return queryset.annotate(
        product_count=_count_subquery(Product.objects.for_tenant(tenant)),
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
        ReferenceImage.objects.for_tenant(tenant)
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
