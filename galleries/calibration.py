"""Per-gallery calibrated confidence: fitted on the tenant's own reference images, read by every recognition.

A gallery too small to fit (see ``recognition.engine.calibration.MIN_IMAGES``) uses ``DEFAULT_CALIBRATION``
when it is served by the model that default was fitted for; with any other model it has no calibration, and
answers as plain PP-ShiTu does (score threshold only): a confidence is only meaningful on its model's cosine
scale. The fit runs in a worker after the gallery changes materially (a tenth more or fewer ready images),
never in a request.
"""
from __future__ import annotations

import numpy as np
from django.core.cache import cache

from galleries.local_features import local_features_for_embeddings
from galleries.models import Embedding, Gallery, GalleryCalibration, ReferenceImage
from recognition.engine.calibration import DEFAULT_CALIBRATION, EVIDENCE, Calibration, calibrate_gallery

REFIT_CHANGE = 0.1
# The extractor DEFAULT_CALIBRATION was fitted for (drink-dev's train half; recognition/engine/calibration.py).
DEFAULT_CALIBRATION_MODEL = "shitu-rec-lite0-dd53@1"


def default_calibration(model_key: str) -> Calibration | None:
    return DEFAULT_CALIBRATION if model_key == DEFAULT_CALIBRATION_MODEL else None


def gallery_calibration(*, gallery: Gallery, model_key: str) -> Calibration | None:
    """The gallery's fitted calibration for this model, else the model's default (None: no calibration)."""
    row = GalleryCalibration.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).first()
    if row is None or not row.calibration:
        return default_calibration(model_key)
    try:
        calibration = Calibration.from_dict(row.calibration)
    except (KeyError, TypeError, ValueError):
        return default_calibration(model_key)
    if calibration.evidence != EVIDENCE:  # fitted by older code: read as fitted, refitted once in a worker
        calibration_refit_later(gallery=gallery, model_key=model_key)
    return calibration


def calibration_is_stale(*, gallery: Gallery, model_key: str) -> bool:
    ready = ReferenceImage.objects.for_tenant(gallery.tenant).filter(gallery=gallery, status=ReferenceImage.Status.READY).count()
    row = GalleryCalibration.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).first()
    if row is None:
        return ready > 0
    if row.calibration and Calibration.evidence_of(row.calibration) != EVIDENCE:
        return True  # fitted on the features of older code (see gallery_calibration)
    return abs(ready - row.images) > REFIT_CHANGE * max(row.images, 1)


def gallery_calibration_refit(*, gallery: Gallery, model_key: str) -> Calibration | None:
    """Leave-one-out over the gallery's vectors of ``model_key`` (with verification), stored for recognitions."""
    rows = list(Embedding.objects.for_tenant(gallery.tenant)
                .filter(gallery=gallery, model_key=model_key, reference_image__status=ReferenceImage.Status.READY)
                .order_by("pk").values_list("pk", "vector", "reference_image__product__label"))
    if not rows:
        return default_calibration(model_key)
    ids = [pk for pk, _, _ in rows]
    vectors = np.asarray([np.asarray(vector, dtype=np.float32) for _, vector, _ in rows])
    labels = [label for _, _, label in rows]
    features = local_features_for_embeddings(tenant=gallery.tenant, embedding_ids=ids)
    fitted = calibrate_gallery(vectors, labels, [features.get(pk) for pk in ids])
    # too small (or too easy) to fit: calibrate_gallery answers the default, which only its own model may use
    calibration = fitted if fitted is not DEFAULT_CALIBRATION else default_calibration(model_key)
    stored = calibration.to_dict() if calibration is not None else {}
    GalleryCalibration.objects.for_tenant(gallery.tenant).update_or_create(
        gallery=gallery, model_key=model_key, defaults={"calibration": stored, "images": len(rows)},
        create_defaults={"tenant": gallery.tenant, "calibration": stored, "images": len(rows)},
    )
    return calibration


def calibration_refit_later(*, gallery: Gallery, model_key: str) -> None:
    """Queue a refit when the gallery changed materially; one queued refit per (gallery, model) at a time."""
    if not calibration_is_stale(gallery=gallery, model_key=model_key):
        return
    if not cache.add(f"galleries:calibration:{gallery.pk}:{model_key}", "1", timeout=600):
        return
    from galleries.tasks import refit_calibration

    refit_calibration.apply_async(args=[gallery.pk, model_key], kwargs={"tenant_id": gallery.tenant_id}, queue="default")
