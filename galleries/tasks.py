"""Celery tasks for galleries: thin, idempotent, state in the database."""
from celery import shared_task
from celery.signals import worker_ready

from galleries.services import gallery_indexes_refresh, reference_image_reembed, reference_images_embed
from galleries.sweeps import reference_image_objects_sweep
from shitu_platform import jobs


@shared_task(name="galleries.embed_reference_images", acks_late=True,
             db_scope="tenant", tenant_row=("galleries.ReferenceImage", "reference_image_ids"))
def embed_reference_images(reference_image_ids: list[int], tenant_id: int | None = None) -> dict[str, int]:
    outcome = reference_images_embed(reference_image_ids=reference_image_ids)
    gallery_indexes_refresh(reference_image_ids=reference_image_ids)
    return {"ready": outcome.ready, "failed": outcome.failed, "skipped": outcome.skipped}


@shared_task(name="galleries.reembed_reference_image", acks_late=True,
             db_scope="tenant", tenant_row=("galleries.ReferenceImage", "reference_image_id"))
def reembed_reference_image(reference_image_id: int, tenant_id: int | None = None) -> dict[str, list[str]]:
    """A person corrected the image's box: its vectors and local features follow (``reference_image_box_set``)."""
    return {"models": reference_image_reembed(reference_image_id=reference_image_id)}


@shared_task(name="galleries.run_import", acks_late=True, bind=True,
             db_scope="tenant", tenant_row=("galleries.ImportJob", "job_id"))
def run_import(self, job_id: int, takeover: str = "", tenant_id: int | None = None) -> str:
    from galleries.health import gallery_health_refresh_later
    from galleries.imports import import_run
    from galleries.models import ImportJob

    job = import_run(job_id=job_id, worker=self.request.hostname or "", takeover=takeover)
    if job.status == ImportJob.Status.DONE:  # the gallery changed: its health report follows (galleries.health)
        gallery_health_refresh_later(gallery=job.gallery)
    return job.status


@shared_task(name="galleries.resume_stale_imports", bind=True, db_scope="system")
def resume_stale_imports(self) -> list[int]:
    """Run by every worker as it starts: imports whose worker died are picked up again."""
    from galleries.imports import stale_imports

    hostname = self.request.hostname or ""
    stale = stale_imports(this_worker=hostname, live_workers=lambda: jobs.ping_workers(self.app, this_worker=hostname))
    for job in stale:
        run_import.apply_async(args=[job.job_id], kwargs={"takeover": job.dead_token, "tenant_id": job.tenant_id}, queue="default")
    return [job.job_id for job in stale]


@shared_task(name="galleries.backfill_default_model", acks_late=True, db_scope="system")
def backfill_default_model() -> dict:
    """Embed galleries with a new platform default in the background (beat, every minute; one run at a time)."""
    from django.core.cache import cache

    from galleries.services import default_model_backfill

    if not cache.add("galleries:backfill-default-model", "1", timeout=3600):
        return {"skipped": "another backfill is running"}
    try:
        return default_model_backfill()
    finally:
        cache.delete("galleries:backfill-default-model")


@shared_task(name="galleries.refit_calibration", acks_late=True,
             db_scope="tenant", tenant_row=("galleries.Gallery", "gallery_id"))
def refit_calibration(gallery_id: int, model_key: str, tenant_id: int | None = None) -> dict:
    """Fit the gallery's confidence calibration (worker code: the gallery row is re-read with its tenant)."""
    from django.core.cache import cache

    from galleries.calibration import gallery_calibration_refit
    from galleries.models import Gallery

    try:
        gallery = Gallery.unscoped.select_related("tenant").filter(pk=gallery_id).first()
        if gallery is None:
            return {"skipped": "the gallery is gone"}
        calibration = gallery_calibration_refit(gallery=gallery, model_key=model_key)
        return {"threshold": calibration.threshold, "samples": calibration.samples} if calibration else {"fitted": False}
    finally:
        cache.delete(f"galleries:calibration:{gallery_id}:{model_key}")


@shared_task(name="galleries.build_local_feature_pack", acks_late=True,
             db_scope="tenant", tenant_row=("galleries.Gallery", "gallery_id"))
def build_local_feature_pack(gallery_id: int, tenant_id: int | None = None) -> dict:
    """Repack the gallery's reference local features for cold workers (``galleries.local_feature_pack``)."""
    from galleries.local_feature_pack import local_feature_pack_rebuild

    return local_feature_pack_rebuild(gallery_id=gallery_id)


@shared_task(name="galleries.compute_gallery_health", acks_late=True,
             db_scope="tenant", tenant_row=("galleries.Gallery", "gallery_id"))
def compute_gallery_health(tenant_id: int, gallery_id: int) -> dict:
    """Recompute the gallery's health report (after an import, or from the page's Recompute button)."""
    from galleries.health import gallery_health_run

    return gallery_health_run(tenant_id=tenant_id, gallery_id=gallery_id)


@shared_task(name="galleries.prune_pgvector_indexes", db_scope="system")
def prune_pgvector_indexes() -> int:
    from galleries.pgvector_search import prune_pgvector_indexes as prune

    return len(prune() or [])


@worker_ready.connect
def _resume_on_start(sender, **_: object) -> None:
    resume_stale_imports.apply_async(queue="default")


@shared_task(name="galleries.sweep_orphan_objects", db_scope="system")
def sweep_orphan_objects() -> int:
    return reference_image_objects_sweep()
