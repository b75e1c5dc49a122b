"""Celery tasks for galleries: thin, idempotent, state in the database."""
from celery import shared_task

from galleries.services import gallery_indexes_refresh, reference_images_embed


@shared_task(name="galleries.embed_reference_images", acks_late=True)
def embed_reference_images(reference_image_ids: list[int]) -> dict[str, int]:
    outcome = reference_images_embed(reference_image_ids=reference_image_ids)
    gallery_indexes_refresh(reference_image_ids=reference_image_ids)
    return {"ready": outcome.ready, "failed": outcome.failed, "skipped": outcome.skipped}
