"""Writes for galleries: adding reference images (object first, then row) and removing them (row, then object)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from galleries.calibration import calibration_refit_later
from galleries.errors import InvalidBoundingBox, ReferenceImageNotReady
from galleries.indexing import gallery_index_cache, persist
from galleries.local_feature_pack import local_feature_pack_rebuild_later
from galleries.local_features import images_without_local_features, local_features_store
from galleries.models import Embedding, Gallery, ImportJob, Product, ReferenceImage
from galleries.pgvector_search import drop_pgvector_indexes, ensure_pgvector_index
from galleries.selectors import gallery_name_taken, product_label_taken, products_matching
from modelhub.registry import LoadedModel, active_detector, extractor_by_key, extractor_for
from modelhub.selectors import active_model
from recognition.engine.boxes import crop
from recognition.engine.filters import AttributeFilter
from recognition.engine.imageio import load_image, sniff_format
from recognition.engine.main_object import main_object_box
from shitu_platform.errors import PlatformError, QuotaExceeded, ServiceUnavailable
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bmp": "image/bmp", "gif": "image/gif"}


@dataclass(frozen=True)
class UploadOutcome:
    reference_image: ReferenceImage
    created: bool  # False when the gallery already had these exact bytes


def reference_image_object_key(*, gallery: Gallery, checksum: str) -> str:
    return tenant_key(gallery.tenant_id, "galleries", str(gallery.pk), "images", checksum)


def reference_image_upload(
    *, product: Product, data: bytes, bbox: list[float] | None = None, import_job: "ImportJob | None" = None
) -> UploadOutcome:
    """Validate and store an image of `product`, then record it as pending; embedding happens in a worker.

    Idempotent by content: the same bytes in the same gallery return the existing row. The object is written
    before the row, so a crash between the two leaves only an orphan object that the sweep removes.
    """
    pixels = load_image(data, max_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_pixels=settings.SHITU_MAX_IMAGE_PIXELS)
    height, width = pixels.shape[:2]
    bbox = _checked_bbox(bbox, width=width, height=height)
    gallery = product.gallery
    checksum = hashlib.sha256(data).hexdigest()
    existing = ReferenceImage.objects.for_tenant(product.tenant).filter(gallery=gallery, checksum=checksum).first()
    if existing is not None:
        return UploadOutcome(existing, created=False)
    limit = product.tenant.max_images_per_gallery
    if ReferenceImage.objects.for_tenant(product.tenant).filter(gallery=gallery).count() >= limit:
        raise QuotaExceeded(f"gallery '{gallery.name}' holds its quota of {limit} images", details={"limit": limit})
    key = reference_image_object_key(gallery=gallery, checksum=checksum)
    object_store().put(key, data, content_type=CONTENT_TYPES.get(sniff_format(data) or "", "application/octet-stream"))
    try:
        with transaction.atomic():
            reference_image = ReferenceImage(
                tenant=product.tenant, gallery=gallery, product=product, object_key=key, checksum=checksum,
                size_bytes=len(data), width=width, height=height, bbox=bbox, import_job=import_job,
            )
            reference_image.save()
    except IntegrityError:  # a concurrent upload of the same bytes won the race
        return UploadOutcome(ReferenceImage.objects.for_tenant(product.tenant).get(gallery=gallery, checksum=checksum), created=False)
    if import_job is None:  # imports embed their own batches
        _enqueue_embedding([reference_image.pk], tenant_id=reference_image.tenant_id)
    return UploadOutcome(reference_image, created=True)


def reference_image_delete(*, reference_image: ReferenceImage) -> None:
    """Remove the row (and its embeddings) now; the object goes with the next storage sweep."""
    with transaction.atomic():
        gallery_id = reference_image.gallery_id
        reference_image.delete()
        gallery_version_bump(gallery_id=gallery_id)


def gallery_version_bump(*, gallery_id: int) -> None:
    """Searchable content changed: caches built from an older version refresh on their next use, and the gallery
    says when (``index_updated_at``, in the same UPDATE as the version)."""
    Gallery.unscoped.filter(pk=gallery_id).update(index_version=F("index_version") + 1, index_updated_at=timezone.now())


def _enqueue_embedding(reference_image_ids: list[int], *, tenant_id: int) -> None:
    from galleries.tasks import embed_reference_images  # galleries.tasks imports this module: a cycle at import time

    transaction.on_commit(lambda: embed_reference_images.apply_async(
        args=[reference_image_ids], kwargs={"tenant_id": tenant_id}, queue="default"))


def _checked_bbox(bbox: list[float] | None, *, width: int, height: int) -> list[float] | None:
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise InvalidBoundingBox("bbox is [xmin, ymin, xmax, ymax]")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if not (0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height):
        raise InvalidBoundingBox(f"bbox {bbox} is not inside the {width}x{height} image")
    if (xmax - xmin) < 8 or (ymax - ymin) < 8:
        raise InvalidBoundingBox("bbox is smaller than 8x8 px")
    return [xmin, ymin, xmax, ymax]


@dataclass(frozen=True)
class EmbedOutcome:
    ready: int
    failed: int
    skipped: int


def reference_images_embed(*, reference_image_ids: list[int], image_bytes: dict[int, bytes] | None = None) -> EmbedOutcome:
    """Embed pending images with their tenant's extractor, one extractor call per batch; safe to run twice.

    Per image: the given bbox, else (in a gallery that detects references) its main object, else the whole
    image. An image that cannot be read or decoded is marked failed with the reason; the others still succeed.
    `image_bytes` (id -> the bytes just stored, e.g. by an import) spares those images the download.
    """
    # Runs in a worker for ids it was handed by a tenant-scoped upload; rows are re-read with their tenant.
    images = list(
        ReferenceImage.unscoped.filter(pk__in=reference_image_ids, status=ReferenceImage.Status.PENDING)
        .select_related("gallery", "tenant").order_by("tenant_id", "pk")
    )
    ready = failed = 0
    for gallery_id in sorted({image.gallery_id for image in images}):
        batch = [image for image in images if image.gallery_id == gallery_id]
        target = extractor_for(tenant=batch[0].tenant)
        done, broken = reference_images_embed_with(images=batch, extractor=target, image_bytes=image_bytes)
        ready, failed = ready + done, failed + broken
        serving = extractor_for(tenant=batch[0].tenant, gallery=batch[0].gallery)
        if serving.key != target.key:  # a new default is still being backfilled: the answering model sees it too
            reference_images_embed_with(images=[i for i in batch if i.status != ReferenceImage.Status.FAILED],
                                        extractor=serving, image_bytes=image_bytes)
    return EmbedOutcome(ready=ready, failed=failed, skipped=len(reference_image_ids) - len(images))


def default_model_backfill(*, batch_size: int | None = None, progress=None) -> dict[str, int]:
    """Embed every gallery that follows the platform default with the current default, in the background.

    Worker code over all tenants (each gallery's rows are read with its own tenant). Until a gallery is complete
    its recognitions keep using a previous default that covers it (``modelhub.registry.extractor_for``); the
    switch happens by itself when the last vector is written."""
    default = extractor_for(tenant=None)
    size = batch_size or settings.SHITU_IMPORT_BATCH_SIZE
    embedded = galleries_done = 0

    for gallery in Gallery.unscoped.all().select_related("tenant").order_by("pk"):
        active = active_model(tenant=gallery.tenant)
        if active is not None and active.extractor_id is not None:
            continue  # the tenant has its own model: a promotion re-embeds for it
        missing = (ReferenceImage.objects.for_tenant(gallery.tenant)
                   .filter(gallery=gallery, status=ReferenceImage.Status.READY)
                   .exclude(embeddings__model_key=default.key).select_related("gallery").order_by("pk"))
        touched = False
        batch = list(missing[:size])
        while batch:
            done, _ = reference_images_embed_with(images=batch, extractor=default)
            embedded += done
            touched = True
            if progress is not None:
                progress(gallery, embedded)
            batch = list(missing[:size])
        if touched:
            gallery_index_refresh(gallery=gallery, model_key=default.key)
            galleries_done += 1
    return {"model": default.key, "embedded": embedded, "galleries": galleries_done}


def reference_images_embed_with(*, images: list[ReferenceImage], extractor,
                                image_bytes: dict[int, bytes] | None = None) -> tuple[int, int]:
    """Write `extractor`'s vectors for these images (new rows for a new model, so the old ones keep serving); an
    image whose bytes are in `image_bytes` is not read from storage again."""
    # the detector only loads (and runs) for galleries that crop references to their main object
    detector = active_detector() if any(i.bbox is None and i.gallery.detect_references for i in images) else None
    crops, boxes, ok_images, failed = [], [], [], 0
    for reference_image in images:
        try:
            data = (image_bytes or {}).get(reference_image.pk)
            if data is None:
                data = object_store().get(reference_image.object_key)
            pixels = load_image(data, max_pixels=settings.SHITU_MAX_IMAGE_PIXELS, max_bytes=settings.SHITU_MAX_IMAGE_BYTES)
        except Exception as error:  # noqa: BLE001 - any failure of one image is recorded on that image
            _mark_failed(reference_image, f"{getattr(error, 'code', type(error).__name__)}: {error}")
            failed += 1
            continue
        box = reference_image.bbox or (_main_object_box(detector, pixels) if reference_image.gallery.detect_references else None)
        crops.append(pixels if box is None else crop(pixels, box))
        boxes.append(box)
        ok_images.append(reference_image)
        if not reference_image.local_features_key:  # model-independent: once per image, not per extractor
            local_features_store(image=reference_image, crop=crops[-1])
    if ok_images:
        vectors = extractor.model.extract(crops)
        _store_embeddings(ok_images, vectors, boxes, extractor.key)
    return len(ok_images), failed


def reference_local_features_backfill(*, batch_size: int = 64, progress=None) -> int:
    """Compute the missing local features of every ready reference image (all tenants; worker/admin code)."""

    done = 0
    # each image's crop is the box its vector came from: fetch the embeddings with the batch, not one query each
    pending = images_without_local_features(ReferenceImage.unscoped.all()).prefetch_related("embeddings")
    batch = list(pending[:batch_size])
    while batch:
        for image in batch:
            try:
                pixels = load_image(object_store().get(image.object_key), max_pixels=settings.SHITU_MAX_IMAGE_PIXELS,
                                    max_bytes=settings.SHITU_MAX_IMAGE_BYTES)
            except Exception:  # noqa: BLE001 - an unreadable image is skipped; it keeps serving unverified
                continue
            first = next(iter(image.embeddings.all()), None)
            box = (first.box if first is not None else None) or image.bbox
            local_features_store(image=image, crop=pixels if box is None else crop(pixels, box))
            done += 1
            if progress is not None:
                progress(done)
        last = batch[-1].pk
        batch = list(pending.filter(pk__gt=last)[:batch_size])
    return done


def _store_embeddings(images: list[ReferenceImage], vectors, boxes, model_key: str) -> None:
    with transaction.atomic():
        for reference_image, vector, box in zip(images, vectors, boxes, strict=True):
            Embedding.unscoped.update_or_create(
                reference_image=reference_image, model_key=model_key,
                defaults={"vector": vector.tolist(), "box": box},
                create_defaults={"tenant_id": reference_image.tenant_id, "gallery_id": reference_image.gallery_id,
                                 "vector": vector.tolist(), "box": box},
            )
        ReferenceImage.unscoped.filter(pk__in=[i.pk for i in images]).update(status=ReferenceImage.Status.READY, failure_reason="")
        for gallery_id in {i.gallery_id for i in images}:
            gallery_version_bump(gallery_id=gallery_id)


def _mark_failed(reference_image: ReferenceImage, reason: str) -> None:
    ReferenceImage.objects.for_tenant(reference_image.tenant).filter(pk=reference_image.pk).update(
        status=ReferenceImage.Status.FAILED, failure_reason=reason[:2000])


def _main_object_box(detector, pixels) -> list[float] | None:
    """The photo's main object (recognition/engine/main_object.py), or None for the whole image."""
    best = main_object_box(detector.model, pixels) if detector is not None else None
    return [best.xmin, best.ymin, best.xmax, best.ymax] if best is not None else None


def gallery_indexes_refresh(*, reference_image_ids: list[int]) -> None:
    """Refresh this worker's caches of the galleries these images belong to, and persist them for other workers."""
    gallery_ids = set(ReferenceImage.unscoped.filter(pk__in=reference_image_ids).values_list("gallery_id", flat=True))
    for gallery in Gallery.unscoped.filter(pk__in=gallery_ids).select_related("tenant"):
        gallery_index_refresh(gallery=gallery)


def gallery_index_refresh(*, gallery: Gallery, model_key: str | None = None) -> None:
    """Refresh this worker's cache of the gallery for `model_key` (default: the tenant's active model) and persist it."""
    key = model_key or extractor_for(tenant=gallery.tenant).key
    persist(gallery, gallery_index_cache.get(gallery, key))
    ensure_pgvector_index(gallery, key)  # the cold-cache fallback stays fast on large galleries (no-op when small)
    calibration_refit_later(gallery=gallery, model_key=key)
    local_feature_pack_rebuild_later(gallery=gallery)  # debounced: cold workers read the features in one request


def gallery_settings_update(*, gallery: Gallery, detect_references: bool) -> Gallery:
    """Choose how new reference photos without a box are cropped. Embedded images keep their vectors (a person
    corrects one with ``reference_image_box_set``), so nothing is re-embedded and the index version stays."""
    gallery.detect_references = detect_references
    gallery.save(update_fields=["detect_references"])
    return gallery


def reference_image_box_set(*, reference_image: ReferenceImage, bbox: list[float] | None) -> ReferenceImage:
    """Save a person's box for the image (None: the whole image) and re-embed the image from it in a worker.

    "Whole image" is stored as the full frame so that, like any given box, it wins over the gallery's detector.
    The re-embedding runs where every embedding runs, in a worker: web processes never load a model."""
    if reference_image.status != ReferenceImage.Status.READY:
        raise ReferenceImageNotReady(f"reference image {reference_image.pk} is {reference_image.status}, not ready")
    width, height = reference_image.width, reference_image.height
    if not (width and height):
        raise InvalidBoundingBox("the image's size is not known, so no box can be checked against it")
    checked = _checked_bbox([0, 0, width, height] if bbox is None else bbox, width=width, height=height)
    ReferenceImage.objects.for_tenant(reference_image.tenant).filter(pk=reference_image.pk).update(bbox=checked)
    reference_image.bbox = checked
    _enqueue_reembedding(reference_image.pk, tenant_id=reference_image.tenant_id)
    return reference_image


def reference_image_reembed(*, reference_image_id: int) -> list[str]:
    """Rewrite a ready image's local features and vectors from its current box, for the models in use and every
    other model that has a vector of it (a rollback then finds the corrected one too); returns the keys written.

    The old rows are replaced by new ones in one transaction, never updated in place: every worker's Faiss cache
    follows a gallery by row id, so only a new id makes it drop the old vector. The row of a model that no longer
    loads goes too: its vector came from the old box."""
    # Worker code, for an id that a tenant-scoped request handed over: the row is re-read with its tenant.
    reference_image = (ReferenceImage.unscoped.select_related("gallery", "tenant")
                       .filter(pk=reference_image_id, status=ReferenceImage.Status.READY).first())
    if reference_image is None:
        return []  # deleted, or failed, since the box was saved
    extractors = _extractors_with_vectors_of(reference_image)
    with transaction.atomic():
        # No key: the first embed below extracts the features of the new crop and writes them over the old object.
        # Should the crop have none, the image is left unverified rather than pointing at the old crop's features.
        ReferenceImage.objects.for_tenant(reference_image.tenant).filter(pk=reference_image.pk).update(local_features_key="")
        reference_image.local_features_key = ""
        Embedding.objects.for_tenant(reference_image.tenant).filter(reference_image=reference_image).delete()
        for extractor in extractors:
            _, failed = reference_images_embed_with(images=[reference_image], extractor=extractor)
            if failed:  # it was read before, so storage is failing now: keep the old vectors and fail the task
                raise ServiceUnavailable(f"reference image {reference_image.pk} could not be read; its vectors are kept")
    for extractor in extractors:
        gallery_index_refresh(gallery=reference_image.gallery, model_key=extractor.key)
    return [extractor.key for extractor in extractors]


def _extractors_with_vectors_of(reference_image: ReferenceImage) -> list[LoadedModel]:
    """The tenant's and the gallery's serving extractor, then every other one that has a vector of the image and
    still loads (a previous fine-tune or platform default)."""
    tenant = reference_image.tenant
    serving = (extractor_for(tenant=tenant), extractor_for(tenant=tenant, gallery=reference_image.gallery))
    chosen = {model.key: model for model in serving}
    keys = Embedding.objects.for_tenant(tenant).filter(reference_image=reference_image).values_list("model_key", flat=True)
    for key in sorted(set(keys) - set(chosen)):
        try:
            chosen[key] = extractor_by_key(key=key, tenant=tenant)
        except LookupError:
            continue  # no longer installed: nothing can answer with it, and its row goes with the old box
    return list(chosen.values())


def _enqueue_reembedding(reference_image_id: int, *, tenant_id: int) -> None:
    from galleries.tasks import reembed_reference_image  # a cycle at import time, as in _enqueue_embedding

    transaction.on_commit(lambda: reembed_reference_image.apply_async(
        args=[reference_image_id], kwargs={"tenant_id": tenant_id}, queue="default"))


class NameTaken(PlatformError):
    """A name that must be unique is in use. The API answers it like a field error of the request (400
    invalid_request, details by field, as the serializers did); the dashboard shows it under its field."""

    code = "invalid_request"
    http_status = 400
    field = ""
    field_message = ""

    def __init__(self, name: str) -> None:
        super().__init__("The request is invalid.", details={self.field: [self.field_message]})
        self.name = name


class GalleryNameTaken(NameTaken):
    field = "name"
    field_message = "This tenant already has a gallery with this name."


class ProductLabelTaken(NameTaken):

    field = "label"
    field_message = "This gallery already has a product with this label."


def gallery_create(*, tenant, name: str, description: str = "", detect_references: bool = False) -> Gallery:
    """Create a gallery (the dashboard's form and the API's POST). A name the tenant already uses raises
    ``GalleryNameTaken``, also when a concurrent request took it between the check and the insert."""
    if gallery_name_taken(tenant=tenant, name=name):
        raise GalleryNameTaken(name)
    try:
        with transaction.atomic():
            return Gallery.objects.create(tenant=tenant, name=name, description=description,
                                          detect_references=detect_references)
    except IntegrityError:  # the (tenant, name) constraint decided a race
        raise GalleryNameTaken(name) from None


def product_create(*, gallery: Gallery, label: str, sku: str = "", display_name: str = "",
                   attributes: dict | None = None) -> Product:
    """Create a product in `gallery`; a label the gallery already has raises ``ProductLabelTaken``."""
    if product_label_taken(gallery=gallery, label=label):
        raise ProductLabelTaken(label)
    try:
        with transaction.atomic():
            return Product.objects.create(tenant=gallery.tenant, gallery=gallery, label=label, sku=sku,
                                          display_name=display_name, attributes=attributes or {})
    except IntegrityError:  # the (gallery, label) constraint decided a race
        raise ProductLabelTaken(label) from None


def gallery_delete(*, gallery: Gallery) -> None:
    """Delete the gallery's rows (cascade), then its pgvector indexes; objects go with the orphan sweep."""
    gallery_id = gallery.pk
    gallery.delete()
    drop_pgvector_indexes(gallery_id)


def gallery_update(*, gallery: Gallery, name: str, description: str) -> Gallery:
    """Rename or re-describe a gallery. Names are unique per tenant: a clash raises ``GalleryNameTaken``.
    Searchable content does not change, so the index version and caches stay as they are."""
    if gallery_name_taken(tenant=gallery.tenant, name=name, exclude_pk=gallery.pk):
        raise GalleryNameTaken(name)
    gallery.name, gallery.description = name, description
    try:
        with transaction.atomic():
            gallery.save(update_fields=["name", "description"])
    except IntegrityError:  # a concurrent rename took the name
        raise GalleryNameTaken(name) from None
    return gallery


def product_update(*, product: Product, label: str, sku: str, display_name: str, attributes: dict) -> Product:
    """Edit a product's label, SKU, display name and attributes. Searches read labels from the rows at answer time,
    and the vectors do not change, so no cache is touched. A label clash in the gallery raises ``ProductLabelTaken``."""
    if product_label_taken(gallery=product.gallery, label=label, exclude_pk=product.pk):
        raise ProductLabelTaken(label)
    product.label, product.sku, product.display_name, product.attributes = label, sku, display_name, attributes
    try:
        with transaction.atomic():
            product.save(update_fields=["label", "sku", "display_name", "attributes"])
    except IntegrityError:  # a concurrent edit took the label
        raise ProductLabelTaken(label) from None
    return product


def product_delete(*, product: Product) -> None:
    """Remove the product with its images and embeddings (cascade) now; like ``reference_image_delete``, the objects
    go with the next storage sweep and the version bump makes every cache drop the vectors."""
    with transaction.atomic():
        gallery_id = product.gallery_id
        product.delete()
        gallery_version_bump(gallery_id=gallery_id)


@dataclass(frozen=True)
class PurgeOutcome:
    """What a purge matched (and removed unless it was a dry run)."""

    products: int
    images: int
    deleted: bool


def products_purge(*, gallery: Gallery, attribute_filter: AttributeFilter, force: bool) -> PurgeOutcome:
    """Delete every product of `gallery` whose attributes pass the filter, with its images and vectors, in one
    transaction and one version bump; without `force` only count them (what a confirmation shows)."""
    with transaction.atomic():
        products = products_matching(Product.objects.for_tenant(gallery.tenant).filter(gallery=gallery),
                                     attribute_filter)
        if force:
            products = products.select_for_update()
        product_ids = list(products.values_list("pk", flat=True))
        images = ReferenceImage.objects.for_tenant(gallery.tenant).filter(product_id__in=product_ids).count()
        if force and product_ids:
            Product.objects.for_tenant(gallery.tenant).filter(pk__in=product_ids).delete()
            gallery_version_bump(gallery_id=gallery.pk)
    return PurgeOutcome(products=len(product_ids), images=images, deleted=force)


class ProductsNotMergeable(PlatformError):
    code = "products_not_mergeable"
    http_status = 400


def product_merge(*, product: Product, into: Product) -> int:
    """Move every reference image of `product` into `into` (same gallery), then delete `product`; returns how many
    moved. Vectors stay as they are: searches read labels from the rows at answer time (see ``product_update``),
    so the moved references answer `into`'s label at once; the version bump makes every Faiss cache refresh (it
    diffs embedding ids, so nothing is re-read) and says when the gallery changed."""
    if product.pk == into.pk or product.gallery_id != into.gallery_id or product.tenant_id != into.tenant_id:
        raise ProductsNotMergeable("a product merges into another product of the same gallery",
                                   details={"product": product.pk, "into": into.pk})
    with transaction.atomic():
        # both rows locked in id order: a concurrent merge of the same pair the other way waits instead of deadlocking
        list(Product.objects.for_tenant(product.tenant).select_for_update()
             .filter(pk__in=[product.pk, into.pk]).order_by("pk").values_list("pk", flat=True))
        moved = ReferenceImage.objects.for_tenant(product.tenant).filter(product=product).update(product=into)
        product.delete()
        gallery_version_bump(gallery_id=into.gallery_id)
    return moved


class ReferenceImageNotMovable(PlatformError):
    code = "reference_image_not_movable"
    http_status = 400


def reference_image_move(*, reference_image: ReferenceImage, product: Product) -> ReferenceImage:
    """File the image under another product of its gallery (a photo uploaded under the wrong label). Like
    ``product_merge`` its vectors stay (labels are read from rows at answer time) and the version bump makes every
    cache refresh and says when the gallery changed. Moving to its own product changes nothing."""
    if product.gallery_id != reference_image.gallery_id or product.tenant_id != reference_image.tenant_id:
        raise ReferenceImageNotMovable("a reference image moves to another product of its own gallery",
                                       details={"reference_image": reference_image.pk, "product": product.pk})
    if product.pk == reference_image.product_id:
        return reference_image
    with transaction.atomic():
        ReferenceImage.objects.for_tenant(reference_image.tenant).filter(pk=reference_image.pk).update(product=product)
        gallery_version_bump(gallery_id=reference_image.gallery_id)
    reference_image.product = product
    return reference_image
