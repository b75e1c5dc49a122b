"""Bulk imports: start (store the archive, queue a job) and run (resumable batches, per-row errors)."""
from __future__ import annotations

import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from galleries.archive import MAX_REPORTED_PATH, ImportArchive, ImportRow, InvalidArchive, RowError, check_row
from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.services import gallery_index_refresh, reference_image_upload, reference_images_embed
from recognition.engine.errors import EngineError
from shitu_platform import jobs
from shitu_platform.errors import PlatformError
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key

MAX_ROW_ERRORS_KEPT = 1000
PROGRESS_STEPS = 40  # a small import advances per row; a large one in 40 steps (or one extractor batch, if smaller)


def import_start(*, gallery: Gallery, archive: bytes, archive_name: str, created_by=None) -> ImportJob:
    """Store the archive (object first), then record the job and queue it. The archive is checked now for a fast 400.

    The object's key is its own (not the job's id), so a store that fails raises before any row exists: no queued
    job ever points at a missing archive. A row that fails after the store leaves an unreferenced archive object."""
    _open_archive(archive).rows()
    key = tenant_key(gallery.tenant_id, "imports", uuid.uuid4().hex, "archive.zip")
    object_store().put(key, archive, content_type="application/zip")
    job = ImportJob(tenant=gallery.tenant, gallery=gallery, archive_key=key, archive_name=archive_name[:255], created_by=created_by)
    job.save()
    _enqueue(job.pk, tenant_id=job.tenant_id)
    return job


def import_run(
    *, job_id: int, worker: str = "", takeover: str = "", progress: Callable[[ImportJob], None] | None = None
) -> ImportJob:
    """Run or resume a job from its first unfinished row. A second runner of a live job backs off, unless it was
    sent to take over from a runner known dead (`takeover` = that runner's token)."""
    token = jobs.new_run_token(worker)
    if not _claim(job_id, token, takeover=takeover):
        return ImportJob.unscoped.get(pk=job_id)
    job = ImportJob.unscoped.select_related("gallery", "tenant").get(pk=job_id)
    try:
        archive = _open_archive(object_store().get(job.archive_key))
        rows = archive.rows()
    except InvalidArchive as error:
        return _finish(job, ImportJob.Status.FAILED, reason=f"{error.code}: {error.message}")
    job.total_rows = len(rows)
    # "0 of N" shows as soon as the archive is read, not after the first batch
    ImportJob.objects.for_tenant(job.tenant).filter(pk=job.pk, run_token=token).update(total_rows=job.total_rows)
    batch_size = _batch_size(job.total_rows)
    while job.next_row < len(rows):
        batch = rows[job.next_row : job.next_row + batch_size]
        _import_batch(job, archive, batch, token)
        if progress is not None:
            progress(job)
    gallery_index_refresh(gallery=job.gallery)
    return _finish(job, ImportJob.Status.DONE)


def stale_imports(*, this_worker: str, live_workers: Callable[[], set[str]]) -> list[jobs.StaleJob]:
    """Unfinished imports whose worker is gone, with the dead run's token (see shitu_platform.jobs)."""
    unfinished = ImportJob.unscoped.filter(status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING])
    return jobs.stale_jobs(unfinished, this_worker=this_worker, live_workers=live_workers,
                           waiting=ImportJob.Status.QUEUED, state_field="status")


def _import_batch(job: ImportJob, archive: ImportArchive, batch: list[ImportRow], token: str) -> None:
    imported, skipped, errors, to_embed = 0, 0, [], []
    stored: dict[int, bytes] = {}  # the bytes just read from the archive: the embedding needs no download
    for row in batch:
        try:
            check_row(row)
            data = archive.read_image(row.image_path)
            outcome = reference_image_upload(product=_product_for(job.gallery, row), data=data, bbox=row.bbox, import_job=job)
        except RowError as error:
            errors.append(_row_error(row, error.code, error.message))
            continue
        except (EngineError, PlatformError) as error:
            errors.append(_row_error(row, error.code, str(error)))
            continue
        image = outcome.reference_image
        if outcome.created or image.import_job_id == job.pk:  # ours, possibly from a run that died mid-batch
            imported += 1
        else:
            skipped += 1
        if image.status == ReferenceImage.Status.PENDING:
            to_embed.append(image.pk)
            stored[image.pk] = data  # also for a row stored by a run that died: same checksum, same bytes
    if to_embed:
        outcome = reference_images_embed(reference_image_ids=to_embed, image_bytes=stored)
        failed_rows = ReferenceImage.objects.for_tenant(job.tenant).filter(pk__in=to_embed, status=ReferenceImage.Status.FAILED)
        errors.extend({"row": None, "path": "", "code": "embedding_failed", "message": r.failure_reason} for r in failed_rows)
        imported -= outcome.failed
    with transaction.atomic():
        locked = ImportJob.objects.for_tenant(job.tenant).select_for_update().get(pk=job.pk)
        if locked.run_token != token:
            raise RuntimeError("another worker took over this import")
        locked.next_row += len(batch)
        locked.imported += imported
        locked.skipped += skipped
        locked.failed += len(errors)
        locked.row_errors = (locked.row_errors + errors)[:MAX_ROW_ERRORS_KEPT]
        locked.total_rows = job.total_rows
        locked.heartbeat_at = timezone.now()
        locked.save()
    for field in ("next_row", "imported", "skipped", "failed", "row_errors", "heartbeat_at"):
        setattr(job, field, getattr(locked, field))


def _batch_size(total_rows: int) -> int:
    """Rows per batch: progress is committed once a batch is embedded, so a small import goes row by row (its bar
    moves per row, not from 0 % straight to done) and a large one in steps of at most 1/PROGRESS_STEPS."""
    return max(1, min(settings.SHITU_IMPORT_BATCH_SIZE, -(-total_rows // PROGRESS_STEPS)))


def _product_for(gallery: Gallery, row: ImportRow) -> Product:
    product, created = Product.objects.for_tenant(gallery.tenant).get_or_create(
        gallery=gallery, label=row.label,
        defaults={"tenant": gallery.tenant, "display_name": row.display_name, "sku": row.sku, "attributes": row.attributes},
    )
    return product


def _row_error(row: ImportRow, code: str, message: str) -> dict:
    return {"row": row.number, "path": row.image_path[:MAX_REPORTED_PATH], "code": code, "message": message[:500]}


def _claim(job_id: int, token: str, *, takeover: str = "") -> bool:
    return jobs.claim(
        ImportJob, job_id, token, state_field="status", waiting=ImportJob.Status.QUEUED, running=ImportJob.Status.RUNNING,
        finished=(ImportJob.Status.DONE, ImportJob.Status.FAILED), takeover=takeover, extra_updates={"attempts": F("attempts") + 1},
    )


def _finish(job: ImportJob, status: str, *, reason: str = "") -> ImportJob:
    ImportJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(status=status, failure_reason=reason, finished_at=timezone.now())
    job.refresh_from_db()
    return job


def _open_archive(data: bytes) -> ImportArchive:
    return ImportArchive(data, max_member_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_total_bytes=settings.SHITU_MAX_IMPORT_BYTES)


def _enqueue(job_id: int, *, tenant_id: int) -> None:
    from galleries.tasks import run_import

    transaction.on_commit(lambda: run_import.apply_async(args=[job_id], kwargs={"tenant_id": tenant_id}, queue="default"))
