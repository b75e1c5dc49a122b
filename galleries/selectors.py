"""Reads for galleries, always from a tenant-scoped queryset."""
from __future__ import annotations

import re

import numpy as np
from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform

from galleries.models import Embedding, Gallery, GalleryHealth, Product, ReferenceImage
from modelhub.registry import serving_extractor_key
from recognition.engine.filters import AttributeFilter


def gallery_name_taken(*, tenant, name: str, exclude_pk: int | None = None) -> bool:
    """Whether another gallery of the tenant already has this name (names are unique per tenant)."""
    clash = Gallery.objects.for_tenant(tenant).filter(name=name)
    return (clash.exclude(pk=exclude_pk) if exclude_pk is not None else clash).exists()


def product_label_taken(*, gallery: Gallery, label: str, exclude_pk: int | None = None) -> bool:
    """Whether another product of the gallery already has this label (labels are unique per gallery)."""
    clash = Product.objects.for_tenant(gallery.tenant).filter(gallery=gallery, label=label)
    return (clash.exclude(pk=exclude_pk) if exclude_pk is not None else clash).exists()


def products_beside(*, product: Product, limit: int) -> QuerySet:
    """The other products of `product`'s gallery by label (where one of its photos may move), at most `limit`."""
    return (Product.objects.for_tenant(product.tenant).filter(gallery_id=product.gallery_id).exclude(pk=product.pk)
            .order_by("label", "pk").only("pk", "label")[:limit])


def galleries_with_counts(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        product_count=Count("products", distinct=True), image_count=Count("reference_images", distinct=True)
    )


def products_with_counts(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        image_count=Count("reference_images", filter=~Q(reference_images__status=ReferenceImage.Status.FAILED))
    )


ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")


def products_filtered(queryset: QuerySet, *, label: str | None = None, attributes: dict[str, str] | None = None) -> QuerySet:
    """Filter by label substring (case-insensitive) and exact attribute values.

    Attribute filters use JSON containment, never a lookup built from the key, so `a__regex` cannot become a query.
    """
    if label:
        queryset = queryset.filter(label__icontains=label)
    for key, value in (attributes or {}).items():
        queryset = queryset.filter(attributes__contains={key: value})
    return queryset


def products_matching(queryset: QuerySet, attribute_filter: AttributeFilter) -> QuerySet:
    """Products whose attributes pass ``attribute_filter`` (AND of OR-groups of key=value), in SQL.

    A term matches the attribute's text (``->>``: a string as is, a number or boolean as JSON writes it) or a
    string in a list held by the key; the same rule as ``AttributeFilter.matches``. Keys are bound as values of
    a key transform, never parsed as lookups.
    """
    aliases: dict[str, KeyTextTransform] = {}
    combined = Q()
    for group in attribute_filter.groups:
        either = Q()
        for key, value in group:
            name = f"_filter_{len(aliases)}"
            aliases[name] = KeyTextTransform(key, "attributes")
            either |= Q(**{name: value}) | Q(attributes__contains={key: [value]})
        combined &= either
    return queryset.alias(**aliases).filter(combined)


def embedding_ids_matching(*, gallery: Gallery, model_key: str, attribute_filter: AttributeFilter) -> np.ndarray:
    """Sorted ids of the gallery's ``model_key`` vectors whose product passes the filter: the only vectors a
    filtered recognition may search."""
    products = products_matching(Product.objects.for_tenant(gallery.tenant).filter(gallery=gallery), attribute_filter)
    ids = (Embedding.objects.for_tenant(gallery.tenant)
           .filter(gallery=gallery, model_key=model_key, reference_image__product__in=products.values("pk"))
           .values_list("id", flat=True))
    return np.sort(np.fromiter(ids, dtype=np.int64))


def model_coverage(*, gallery) -> tuple[int, dict[str, int]]:
    """(ready reference images, vectors per model key) of one gallery: which models can answer for all of it."""
    ready = ReferenceImage.objects.for_tenant(gallery.tenant).filter(
        gallery=gallery, status=ReferenceImage.Status.READY).count()
    counts = dict(Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery)
                  .filter(reference_image__status=ReferenceImage.Status.READY)
                  .values_list("model_key").annotate(n=Count("id")).values_list("model_key", "n"))
    return ready, counts



def gallery_delete_counts(*, gallery) -> dict[str, int]:
    """What deleting the gallery removes with it (cascade), for its confirmation page. The rows of the apps above
    (recognitions, fine-tune jobs) are counted through the gallery's reverse relations, so this app imports none
    of their models."""
    tenant = gallery.tenant
    return {"products": gallery.products.for_tenant(tenant).count(),
            "images": gallery.reference_images.for_tenant(tenant).count(),
            "imports": gallery.imports.for_tenant(tenant).count(),
            "recognitions": gallery.recognitions.for_tenant(tenant).count(),
            "fine_tunes": gallery.fine_tune_jobs.for_tenant(tenant).count()}


def product_delete_counts(*, product) -> dict[str, int]:
    """What deleting the product removes with it, for its confirmation page."""
    return {"images": product.reference_images.for_tenant(product.tenant).count()}


def serving_model_key(*, gallery) -> str:
    """The key of the extractor answering for the gallery (``modelhub.registry.extractor_for``), worked out from
    rows and manifests alone: dashboard pages show its boxes, and web processes never load a model."""
    return serving_extractor_key(tenant=gallery.tenant, gallery=gallery)


def reference_image_boxes(*, tenant, reference_image_ids: list[int], model_key: str) -> dict[int, list[float] | None]:
    """The box each image's `model_key` vector came from (None: the whole image); images without one are absent."""
    return dict(Embedding.objects.for_tenant(tenant).filter(reference_image_id__in=reference_image_ids, model_key=model_key)
                .values_list("reference_image_id", "box"))


def gallery_health(*, gallery):
    """The gallery's latest health report row (``galleries.health``), or None before its first computation."""
    return GalleryHealth.objects.for_tenant(gallery.tenant).filter(gallery=gallery).first()


def gallery_health_summary(*, gallery) -> dict:
    """The stored health report of the gallery with its state, as the API shows it ("not_computed" before the first)."""
    health = gallery_health(gallery=gallery)
    if health is None:
        return {"gallery": gallery.pk, "status": "not_computed", "stale": False, "model_key": "", "index_version": None,
                "requested_at": None, "computed_at": None, "failure_reason": "", "report": {}}
    return {
        "gallery": gallery.pk, "status": health.status,
        "stale": health.index_version is not None and health.index_version != gallery.index_version,
        "model_key": health.model_key, "index_version": health.index_version, "requested_at": health.requested_at,
        "computed_at": health.computed_at, "failure_reason": health.failure_reason, "report": health.report,
    }
