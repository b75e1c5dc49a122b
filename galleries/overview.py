"""The galleries' part of the tenant overview (registered in GalleriesConfig.ready): how much the tenant has
catalogued, its recent imports, and the "Get started" hint while it has no gallery yet."""
from __future__ import annotations

from django.db.models import Count, Q
from django.urls import reverse

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from shitu_platform.overview import Figure, OverviewPart, Panel
from shitu_platform.tenancy.models import Tenant

RECENT_IMPORTS = 5


def gallery_totals(*, tenant: Tenant) -> dict[str, int]:
    """Galleries, products and reference images (ready, and still being embedded) of the tenant."""
    images = ReferenceImage.objects.for_tenant(tenant).aggregate(
        total=Count("pk"), ready=Count("pk", filter=Q(status=ReferenceImage.Status.READY)),
        pending=Count("pk", filter=Q(status=ReferenceImage.Status.PENDING)),
    )
    return {"galleries": Gallery.objects.for_tenant(tenant).count(), "products": Product.objects.for_tenant(tenant).count(),
            "images": images["total"], "images_ready": images["ready"], "images_pending": images["pending"]}


def recent_imports(*, tenant: Tenant, limit: int = RECENT_IMPORTS) -> list[ImportJob]:
    return list(ImportJob.objects.for_tenant(tenant).select_related("gallery").order_by("-created_at")[:limit])


def tenant_overview_part(*, tenant: Tenant) -> OverviewPart:
    totals = gallery_totals(tenant=tenant)
    galleries_url = reverse("dashboard:galleries")
    image_detail = f"{totals['images_ready']:,} ready" + (f", {totals['images_pending']:,} embedding" if totals["images_pending"] else "")
    figures = [
        Figure(label="Galleries", value=f"{totals['galleries']:,}", detail=f"{totals['products']:,} product{'' if totals['products'] == 1 else 's'}",
               url=galleries_url, order=10, key="figure-galleries"),
        Figure(label="Reference images", value=f"{totals['images']:,}", detail=image_detail, order=11, key="figure-images"),
    ]
    panels = [Panel(template="overview/_imports.html", context={"imports": recent_imports(tenant=tenant)}, order=40)]
    if totals["galleries"] == 0:
        panels.append(Panel(template="overview/_get_started.html", context={"galleries_url": galleries_url}, order=0, wide=True, lead=True))
    return OverviewPart(figures=figures, panels=panels)
