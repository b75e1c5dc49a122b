"""Recognise products in a photo: store the query, run the PP-ShiTu pipeline in an inference worker, keep the result."""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any, Callable

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from galleries.calibration import gallery_calibration
from galleries.indexing import gallery_searcher
from galleries.local_features import local_features_for_embeddings
from galleries.models import Embedding, Gallery, ReferenceImage
from galleries.selectors import embedding_ids_matching
from modelhub.registry import active_detector, extractor_for
from recognition.engine.errors import EngineError
from recognition.engine.filters import normalized_filter, parse_filter
from recognition.engine.imageio import load_image
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.types import RecognizedObject
from recognition import selectors
from recognition.evidence import evidence_record
from recognition.models import DetectedObject, Recognition
from recognition.reviews import low_margin_reviews_open
from shitu_platform.errors import PlatformError
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key
from shitu_platform.tenancy.models import Tenant


class NoGallery(PlatformError):
    code = "no_gallery"
    http_status = 400


def recognition_request(
    *, tenant: Tenant, gallery: Gallery | None, reference_image: ReferenceImage | None,
    photo: Callable[[], bytes] | None, params: PipelineParams, attribute_filter: str = "", webhook_url: str = "",
    source: str = "api", wait: bool = True,
) -> Recognition:
    """The whole flow of one request, for the API and the dashboard alike: choose the gallery (the given one, else
    the reference image's, else the tenant's first), store the photo (`photo()`, read only once a gallery is
    known, or the reference image's own bytes), queue it for an inference worker and, with `wait`, wait up to
    SHITU_RECOGNITION_TIMEOUT. The returned row may still be queued (the caller answers 202 with the URL to
    poll); the work is never dropped."""
    chosen = selectors.gallery_to_search(tenant=tenant, gallery=gallery, reference_image=reference_image)
    if chosen is None:
        raise NoGallery("This tenant has no gallery yet: create one and add reference images first.")
    if reference_image is not None:
        data = selectors.reference_image_photo(tenant=tenant, reference_image=reference_image)
    elif photo is not None:
        data = photo()
    else:
        raise ValueError("recognition_request needs a `photo` or a `reference_image`")
    recognition = recognition_submit(tenant=tenant, gallery=chosen, data=data, params=params,
                                     webhook_url=webhook_url, source=source, attribute_filter=attribute_filter)
    try:
        async_result = recognition_enqueue(recognition)
    except Exception:  # the broker is down: the row must not wait forever for a task that was never sent
        recognition_mark_undelivered(recognition)
        raise
    if wait:
        recognition = recognition_wait(recognition, async_result, timeout=settings.SHITU_RECOGNITION_TIMEOUT)
    return recognition


def recognition_submit(
    *, tenant: Tenant, gallery: Gallery, data: bytes, params: PipelineParams, webhook_url: str = "", source: str = "api",
    attribute_filter: str = "",
) -> Recognition:
    """Validate and store the photo (object first, then row) and return the row in state `queued`.

    `attribute_filter` (text, see recognition.engine.filters) limits the search to the products that pass it.

    It does not send the work anywhere: the caller queues it with `recognition_enqueue` (on the `inference` queue)."""
    pixels = load_image(data, max_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_pixels=settings.SHITU_MAX_IMAGE_PIXELS)
    attribute_filter = normalized_filter(attribute_filter)  # refused before the photo is stored
    public_id = uuid.uuid4()
    key = tenant_key(tenant.pk, "recognitions", timezone.now().strftime("%Y-%m-%d"), str(public_id))
    object_store().put(key, data)
    recognition = Recognition(
        tenant=tenant, gallery=gallery, public_id=public_id, image_key=key, image_width=pixels.shape[1],
        image_height=pixels.shape[0], params=asdict(params), filter=attribute_filter,
        webhook_url=webhook_url, source=source,
        timings_ms={"queued_at": time.time()},
    )
    recognition.save()
    return recognition


def recognition_enqueue(recognition: Recognition) -> Any:
    from recognition.tasks import run_recognition  # recognition.tasks imports this module: a cycle at import time

    return run_recognition.apply_async(args=[recognition.pk], kwargs={"tenant_id": recognition.tenant_id}, queue="inference")


def recognition_mark_undelivered(recognition: Recognition) -> None:
    _fail(recognition, "service_unavailable", "the job queue was unreachable; the request was not processed, send it again")


def recognition_wait(recognition: Recognition, async_result: Any, *, timeout: float) -> Recognition:
    """Wait for the worker up to `timeout`; the returned row may still be queued (the caller answers 202)."""
    try:
        async_result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
    except CeleryTimeout:
        pass
    recognition.refresh_from_db()
    return recognition


def recognition_run(*, recognition_id: int) -> Recognition:
    """The worker side: decode, detect, extract, search the gallery cache, keep the objects. Idempotent."""
    recognition = Recognition.unscoped.select_related("gallery", "tenant").get(pk=recognition_id)
    if recognition.status != Recognition.Status.QUEUED:
        return recognition
    started = time.time()
    try:
        pixels = load_image(object_store().get(recognition.image_key), max_pixels=settings.SHITU_MAX_IMAGE_PIXELS,
                            max_bytes=settings.SHITU_MAX_IMAGE_BYTES)
        # read once: one request never mixes two models' vectors
        embedding_rows = EmbeddingRows(tenant=recognition.tenant)  # labels and stored matches share one read
        extractor = extractor_for(tenant=recognition.tenant, gallery=recognition.gallery)
        detector = active_detector()
        attribute_filter = parse_filter(recognition.filter)
        allowed = None if attribute_filter is None else embedding_ids_matching(
            gallery=recognition.gallery, model_key=extractor.key, attribute_filter=attribute_filter)
        # Faiss when warm, pgvector while cold; with a filter both search only its products' vectors
        searcher = gallery_searcher(recognition.gallery, extractor.key, allowed=allowed)
        pipeline = RecognitionPipeline(
            detector.model if detector is not None else GivenBoxDetector([]), extractor.model, searcher,
            labels=lambda ids: _labels_for(recognition.tenant, ids, rows=embedding_rows),
            local_features=lambda ids: local_features_for_embeddings(tenant=recognition.tenant, embedding_ids=ids),
            calibration=gallery_calibration(gallery=recognition.gallery, model_key=extractor.key),
        )
        params = PipelineParams(**recognition.params)
        timed = pipeline.recognize_timed(pixels, params)
    except EngineError as error:
        return _fail(recognition, error.code, str(error))
    queued_at = float(recognition.timings_ms.get("queued_at", started))
    timings = {**asdict(timed.timings), "queue_ms": round((started - queued_at) * 1000, 1),
               "search_source": searcher.last.source if searcher.last else "none"}
    with transaction.atomic():
        _store_objects(recognition, timed.objects, min_inliers=params.min_inliers, rows=embedding_rows)
        low_margin_reviews_open(recognition=recognition)
        Recognition.objects.for_tenant(recognition.tenant).filter(pk=recognition.pk).update(
            status=Recognition.Status.DONE, model_key=extractor.key, index_version=searcher.version,
            timings_ms=timings, finished_at=timezone.now(),
        )
    recognition.refresh_from_db()
    return recognition


class EmbeddingRows:
    """The embedding -> reference image -> product rows one recognition reads, kept after the first read so the
    pipeline's labels and the stored matches come from one query (an id asked again is not read again)."""

    FIELDS = ("pk", "box", "reference_image_id", "reference_image__product_id", "reference_image__product__label",
              "reference_image__product__display_name")

    def __init__(self, *, tenant: Tenant) -> None:
        self.tenant = tenant
        self._rows: dict[int, dict] = {}
        self._read: set[int] = set()

    def get(self, embedding_ids: Any) -> dict[int, dict]:
        """The rows of these ids that exist (a deleted reference image's ids are absent)."""
        wanted = {int(i) for i in embedding_ids}
        missing = wanted - self._read
        if missing:
            for row in Embedding.objects.for_tenant(self.tenant).filter(pk__in=missing).values(*self.FIELDS):
                self._rows[row["pk"]] = row
            self._read |= missing
        return {pk: self._rows[pk] for pk in wanted if pk in self._rows}


def _labels_for(tenant: Tenant, embedding_ids: Any, *, rows: EmbeddingRows | None = None) -> dict[int, str]:
    rows = rows if rows is not None else EmbeddingRows(tenant=tenant)
    return {pk: row["reference_image__product__label"] for pk, row in rows.get(embedding_ids).items()}


def _store_objects(recognition: Recognition, objects: list[RecognizedObject], *, min_inliers: int,
                   rows: EmbeddingRows | None = None) -> None:
    rows = rows if rows is not None else EmbeddingRows(tenant=recognition.tenant)
    info = rows.get({m.item_id for obj in objects for m in obj.matches})
    for rank, obj in enumerate(objects):
        matches = [_match_json(m.item_id, m.score, info.get(m.item_id), m.inliers) for m in obj.matches]
        matches = [m for m in matches if m is not None]
        if not matches:
            continue
        best = matches[0]
        rival_match = next((m for m in matches[1:] if m["product_id"] != best["product_id"]), None)
        rival = rival_match["score"] if rival_match is not None else None
        if (best["inliers"] or 0) >= min_inliers and (rival_match is None or (rival_match["inliers"] or 0) < min_inliers):
            rival = None  # geometry decided between the two: no thin cosine margin to review
        # The pairs belong to the pipeline's best match: kept only while that match is still the stored best.
        best_item = next(m.item_id for m in obj.matches if m.item_id in info)
        evidence = obj.evidence if obj.evidence is not None and obj.evidence.item_id == best_item else None
        DetectedObject(
            tenant=recognition.tenant, recognition=recognition, rank=rank, bbox=[round(v, 1) for v in obj.box.as_list()],
            whole_image=obj.box.whole_image, det_score=round(obj.box.score, 4), product_id=best["product_id"],
            reference_image_id=best["reference_image_id"], score=best["score"],
            margin=None if rival is None else round(best["score"] - rival, 4), matches=matches,
            confidence=None if obj.confidence is None else round(float(obj.confidence), 4),
            evidence=None if evidence is None else evidence_record(evidence, reference_box=info[best_item]["box"]),
        ).save()


def _match_json(embedding_id: int, score: float, row: dict | None, inliers: int | None = None) -> dict | None:
    if row is None:  # deleted between search and now: never answer with a removed image
        return None
    return {
        "product_id": row["reference_image__product_id"], "label": row["reference_image__product__label"],
        "display_name": row["reference_image__product__display_name"], "score": round(float(score), 4),
        "reference_image_id": row["reference_image_id"], "inliers": inliers,
    }


def _fail(recognition: Recognition, code: str, reason: str) -> Recognition:
    Recognition.objects.for_tenant(recognition.tenant).filter(pk=recognition.pk).update(
        status=Recognition.Status.FAILED, failure_code=code, failure_reason=reason[:2000], finished_at=timezone.now()
    )
    recognition.refresh_from_db()
    return recognition
