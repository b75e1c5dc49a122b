"""Training-queue tasks: thin; state lives in FineTuneJob rows."""
from celery import shared_task
from celery.signals import worker_ready

from training import services


@shared_task(name="training.run_finetune", acks_late=True, bind=True,
             db_scope="tenant", tenant_row=("training.FineTuneJob", "job_id"))
def run_finetune(self, job_id: int, takeover: str = "", tenant_id: int | None = None) -> str:
    return services.finetune_run(job_id=job_id, worker=self.request.hostname or "", takeover=takeover).state


@shared_task(name="training.promote_finetune", acks_late=True,
             db_scope="tenant", tenant_row=("training.FineTuneJob", "job_id"))
def promote_finetune(job_id: int, tenant_id: int | None = None) -> str:
    return services.finetune_promote_run(job_id=job_id).state


@shared_task(name="training.resume_stale_finetunes", bind=True, db_scope="system")
def resume_stale_finetunes(self) -> list[int]:
    """Fine-tunes whose worker died resume from their last checkpoint (run by each worker at start and by beat)."""
    from shitu_platform import jobs
    from training.models import FineTuneJob

    hostname = self.request.hostname or ""
    unfinished = FineTuneJob.unscoped.filter(state__in=[s for s in FineTuneJob.ACTIVE_STATES if s != FineTuneJob.State.REEMBEDDING])
    stale = jobs.stale_jobs(unfinished, this_worker=hostname, live_workers=lambda: jobs.ping_workers(self.app, this_worker=hostname),
                            waiting=FineTuneJob.State.QUEUED, state_field="state")
    for job in stale:
        run_finetune.apply_async(args=[job.job_id], kwargs={"takeover": job.dead_token, "tenant_id": job.tenant_id}, queue="training")
    return [job.job_id for job in stale]


@worker_ready.connect
def _resume_on_start(sender, **_: object) -> None:
    resume_stale_finetunes.apply_async(queue="training")
