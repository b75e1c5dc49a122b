"""Dashboard pages for gallery health (``galleries.health``): the report with an action per finding, its CSV, the
Recompute button, and merging one product into another (confirmed on a page that says what moves).
Every object comes through the tenant-scoped mixin; another tenant's gallery or product is a 404."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic.detail import SingleObjectMixin

from galleries import selectors
from galleries.health import MIN_REFERENCES, gallery_health_refresh_later, health_csv, health_findings
from galleries.models import Gallery, GalleryHealth, Product, ReferenceImage
from galleries.services import ProductsNotMergeable, product_merge
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedDashboardMixin

SHOWN_PER_SECTION = 100  # the CSV has every stored finding
STUCK_AFTER = timedelta(minutes=10)  # the queue's dedup key lasts as long (galleries.health)
MERGE_CHOICES = 1000  # products offered on the merge page when no target is named (the health page names one)


class GalleryHealthView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """The latest report; findings fixed since (deleted or merged) are left out, labels are today's."""

    scoped_model = Gallery
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        health = selectors.gallery_health(gallery=gallery)
        findings = health_findings(health=health)
        report = health.report if health is not None else {}
        few = findings.few_references[:SHOWN_PER_SECTION]
        thumbnails: dict[int, list[int]] = {}
        for product_id, image_id in (ReferenceImage.objects.for_tenant(self.tenant)
                                     .filter(product_id__in=[item["product"] for item in few], status=ReferenceImage.Status.READY)
                                     .order_by("created_at", "pk").values_list("product_id", "pk")):
            thumbnails.setdefault(product_id, []).append(image_id)
        return render(request, "galleries/health.html", {
            "gallery": gallery,
            "health": health,
            "report": report,
            "findings": findings,
            "computing": _computing(health),
            "confusable_pairs": findings.confusable_pairs[:SHOWN_PER_SECTION],
            "near_duplicates": findings.near_duplicates[:SHOWN_PER_SECTION],
            "few_references": [dict(item, thumbnails=thumbnails.get(item["product"], [])) for item in few],
            "unverified_references": findings.unverified_references[:SHOWN_PER_SECTION],
            "shown_per_section": SHOWN_PER_SECTION,
            "min_references": MIN_REFERENCES,
            "can_write": self.tenant_context.allows(Role.MEMBER),
            "here": request.get_full_path(),
        })


def _computing(health: GalleryHealth | None) -> bool:
    """Queued or running, and asked for recently: a run whose task was lost lets the button work again."""
    if health is None or health.status not in (GalleryHealth.Status.QUEUED, GalleryHealth.Status.RUNNING):
        return False
    return health.requested_at is None or timezone.now() - health.requested_at < STUCK_AFTER


class GalleryHealthRecomputeView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    scoped_model = Gallery
    required_role = Role.MEMBER
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        gallery_health_refresh_later(gallery=gallery)
        messages.success(request, "Recomputing the gallery's health; this page refreshes when it is done.")
        return HttpResponseRedirect(reverse("dashboard:gallery-health", args=[gallery.pk]))


class GalleryHealthCsvView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    scoped_model = Gallery
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gallery = self.get_object()
        findings = health_findings(health=selectors.gallery_health(gallery=gallery))
        response = HttpResponse(health_csv(findings), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="gallery-{gallery.pk}-health.csv"'
        return response


class ProductMergeView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """GET `?into=<id>` shows what moves (without `into`: a choice of target); POST `into=<id>` merges. `next` (a
    local path) is where to go after."""

    scoped_model = Product
    required_role = Role.MEMBER
    http_method_names = ["get", "post"]

    def safely_get_queryset(self, queryset):
        return queryset.select_related("gallery")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        context = {"product": product, "into": None, "problem": None, "next": self._next(request, product),
                   "moving": ReferenceImage.objects.for_tenant(self.tenant).filter(product=product).count()}
        if "into" not in request.GET:  # no target yet: choose one of the gallery's other products
            context["choices"] = (Product.objects.for_tenant(self.tenant).filter(gallery_id=product.gallery_id)
                                  .exclude(pk=product.pk).order_by("label", "pk").only("pk", "label")[:MERGE_CHOICES])
            return render(request, "galleries/health_merge_confirm.html", context)
        context["into"], context["problem"] = self._into(product, request.GET.get("into"))
        return render(request, "galleries/health_merge_confirm.html", context, status=400 if context["problem"] else 200)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        product = self.get_object()
        into, problem = self._into(product, request.POST.get("into"))
        if into is not None:
            label = product.label
            try:
                moved = product_merge(product=product, into=into)
            except ProductsNotMergeable as error:
                problem = error
            else:
                messages.success(request, f"Merged “{label}” into “{into.label}”: {moved} photo{'s' if moved != 1 else ''} moved.")
                return HttpResponseRedirect(self._next(request, into))
        return render(request, "galleries/health_merge_confirm.html", {
            "product": product, "into": None, "problem": problem, "next": self._next(request, product), "moving": 0,
        }, status=400)

    def _into(self, product: Product, raw: str | None) -> tuple[Product | None, ProductsNotMergeable | None]:
        """The product to merge into: this tenant's (another tenant's id is a 404), in the same gallery."""
        if not raw or not raw.isdigit():
            return None, ProductsNotMergeable("choose the product to merge into", details={"into": raw})
        into = Product.objects.for_tenant(self.tenant).filter(pk=int(raw)).select_related("gallery").first()
        if into is None:
            raise Http404("No such product.")
        if into.pk == product.pk or into.gallery_id != product.gallery_id:
            return None, ProductsNotMergeable("a product merges into another product of the same gallery",
                                              details={"product": product.pk, "into": into.pk})
        return into, None

    def _next(self, request: HttpRequest, fallback: Product) -> str:
        wanted = request.POST.get("next") or request.GET.get("next") or ""
        if wanted and url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
            return wanted
        return reverse("dashboard:gallery-product", args=[fallback.pk])
