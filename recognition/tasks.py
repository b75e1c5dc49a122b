"""Recognition tasks: thin wrappers over recognition.services (inference) and recognition.webhooks (callbacks).

Defined here because Celery autodiscovers only `tasks.py`: a task elsewhere is "unregistered" in the worker."""
from celery import shared_task

from recognition import webhooks
from recognition.services import recognition_run
from recognition.sweeps import recognition_photos_sweep, recognitions_purge_expired

# Six tries over about 2.5 minutes (5, 10, 20, 40, 80 s apart): rides out a receiver's restart, not a long outage.
WEBHOOK_MAX_RETRIES = 5
WEBHOOK_BACKOFF_SECONDS = 5


@shared_task(name="recognition.run_recognition", acks_late=True,
             db_scope="tenant", tenant_row=("recognition.Recognition", "recognition_id"))
def run_recognition(recognition_id: int, tenant_id: int | None = None) -> str:
    recognition = recognition_run(recognition_id=recognition_id)
    if recognition.status != recognition.Status.QUEUED and webhooks.webhook_mark_pending(recognition_id=recognition.pk):
        try:
            webhook_deliver.apply_async(args=[recognition.pk], kwargs={"tenant_id": recognition.tenant_id},
                                          queue="default")
        except Exception as error:  # the broker is gone: say so on the row instead of leaving it pending forever
            webhooks.webhook_record_failure(recognition_id=recognition.pk, reason=f"could not be queued: {error}")
            raise
    return recognition.status


@shared_task(name="recognition.webhook_deliver", bind=True, acks_late=True, max_retries=WEBHOOK_MAX_RETRIES,
             db_scope="tenant", tenant_row=("recognition.Recognition", "recognition_id"))
def webhook_deliver(self, recognition_id: int, tenant_id: int | None = None) -> str:
    outcome = webhooks.webhook_attempt(recognition_id=recognition_id,
                                       last_attempt=self.request.retries >= WEBHOOK_MAX_RETRIES)
    if outcome.retry:
        raise self.retry(countdown=WEBHOOK_BACKOFF_SECONDS * 2 ** self.request.retries)
    return outcome.status


@shared_task(name="recognition.purge_expired_recognitions", db_scope="system")
def purge_expired_recognitions() -> int:
    return recognitions_purge_expired()


@shared_task(name="recognition.sweep_orphan_photos", db_scope="system")
def sweep_orphan_photos() -> int:
    return recognition_photos_sweep()
