"""Who runs a long job: claim with a heartbeat, back off from a live runner, take over from a dead one.

Job rows (imports, fine-tunes) carry `run_token` ("worker|pid|nonce") and `heartbeat_at`. A task claims
the row before working; a duplicate delivery of a live job backs off; a worker that starts (or the
beat sweep) finds jobs whose runner is gone and sends them again with `takeover` = the dead token.
"""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any, Callable, NamedTuple

from django.db import models, transaction
from django.utils import timezone

STALE_AFTER = timedelta(seconds=90)


def new_run_token(worker: str) -> str:
    return f"{worker[:200]}|{os.getpid()}|{secrets.token_hex(4)}"


def claim(model: type[models.Model], job_id: int, token: str, *, state_field: str, waiting: str, running: str,
          finished: tuple[str, ...], takeover: str = "", extra_updates: dict | None = None) -> bool:
    """Take the job for `token` unless it is finished or a live run holds it (and it is not the dead `takeover`)."""
    cutoff = timezone.now() - STALE_AFTER
    with transaction.atomic():
        job = model.unscoped.select_for_update().get(pk=job_id)
        state = getattr(job, state_field)
        if state in finished:
            return False
        live = state != waiting and job.heartbeat_at is not None and job.heartbeat_at >= cutoff
        if live and not (takeover and job.run_token == takeover):
            return False
        updates = {"run_token": token, "heartbeat_at": timezone.now(), **(extra_updates or {})}
        if state == waiting:
            updates[state_field] = running
        model.unscoped.filter(pk=job_id).update(**updates)
    return True


def holds(model: type[models.Model], job_id: int, token: str) -> bool:
    """Beat the heartbeat; False when another run has taken the job over (this one must stop)."""
    return bool(model.unscoped.filter(pk=job_id, run_token=token).update(heartbeat_at=timezone.now()))


class StaleJob(NamedTuple):
    """A job to take over: its id, the dead run's token, and its tenant (the scope the takeover task is queued with)."""

    job_id: int
    dead_token: str
    tenant_id: int


def ping_workers(app: Any, *, this_worker: str) -> set[str]:
    """The names of the workers that answer a broadcast ping, the caller's own included. The ping waits out its
    whole 1-s timeout on the calling worker's only process: call it only when a job's runner is in question."""
    return {name for reply in (app.control.ping(timeout=1.0) or []) for name in reply} | {this_worker}


def stale_jobs(queryset: models.QuerySet, *, this_worker: str, live_workers: Callable[[], set[str]], waiting: str,
               state_field: str) -> list[StaleJob]:
    """Unfinished jobs whose runner is gone: an earlier process of this worker's name, a worker that no longer
    answers, or silence for STALE_AFTER; waiting jobs whose message may be lost count after STALE_AFTER.

    `live_workers` is asked once, and only when a running job is found: the sweeps run at every worker start and
    every minute (beat), the imports' on the worker that answers recognitions, and with nothing running the answer
    is not worth a 1-s ping."""
    cutoff = timezone.now() - STALE_AFTER
    live: set[str] | None = None
    stale = []
    for job in queryset:
        holder, _, rest = job.run_token.partition("|")
        holder_pid = rest.partition("|")[0]
        last_sign = job.heartbeat_at or job.created_at
        if getattr(job, state_field) == waiting:
            dead = last_sign < cutoff
        else:
            if live is None:
                live = live_workers()
            dead = (holder == this_worker and holder_pid != str(os.getpid())) or holder not in live or last_sign < cutoff
        if dead:
            stale.append(StaleJob(job.pk, job.run_token, job.tenant_id))
    return stale
