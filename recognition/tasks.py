"""Inference tasks: thin wrappers over recognition.services, on the `inference` queue."""
from celery import shared_task

from recognition.services import recognition_run


@shared_task(name="recognition.run_recognition", acks_late=True)
def run_recognition(recognition_id: int) -> str:
    recognition = recognition_run(recognition_id=recognition_id)
    if recognition.webhook_url:
        from recognition.webhooks import webhook_deliver

        webhook_deliver.apply_async(args=[recognition.pk], queue="default")
    return recognition.status
