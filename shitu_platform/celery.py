"""The Celery app: queues `default` (imports, indexing), `inference` (recognition) and `training`."""
from __future__ import annotations

import inspect
import os
from typing import Any

from celery import Celery, Task
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shitu_platform.settings")


class ScopedTask(Task):
    """Every task of ours runs in a declared row-level-security scope (shitu_platform.tenancy.rls).

    `db_scope="tenant"`: the task runs in one tenant's scope, so its raw SQL and ORM reads see only that tenant's
    rows. Each takes a `tenant_id` argument (None by default, so messages queued before it still run), which the
    enqueuer sets where it has the tenant at hand; `tenant_row` names the model and argument of the row the task
    is handed, which gives the tenant of a message queued without one and is checked against the one queued with
    it. `db_scope="system"`: the task works over every tenant.
    Undeclared tasks (Celery's own) run in the worker's default scope; tests/tenancy/test_rls_tasks.py fails on
    an undeclared task of ours.
    """

    db_scope: str | None = None
    tenant_row: tuple[str, str] | None = None  # ("app.Model", argument holding its id or list of ids)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # imported here: this module loads before Django's settings and apps are
        from shitu_platform.tenancy import rls

        if self.db_scope == "system":
            with rls.task_system_scope():
                return super().__call__(*args, **kwargs)
        if self.db_scope != "tenant":
            return super().__call__(*args, **kwargs)
        bound = inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
        model_label, argument = self.tenant_row or ("", "")
        tenant_id, row = bound.get("tenant_id"), bound.get(argument) if argument else None
        row_ids = [] if row is None else [int(i) for i in row] if isinstance(row, (list, tuple)) else [int(row)]
        with rls.task_tenant_scope(self.name, tenant_id=tenant_id, model_label=model_label, row_ids=row_ids):
            return super().__call__(*args, **kwargs)


app = Celery("shitu_platform", task_cls=ScopedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("inference"), Queue("training"))
app.conf.beat_schedule = {
    "resume-stale-imports": {"task": "galleries.resume_stale_imports", "schedule": 60.0},
    "resume-stale-finetunes": {"task": "training.resume_stale_finetunes", "schedule": 60.0, "options": {"queue": "training"}},
    "purge-expired-recognitions": {"task": "recognition.purge_expired_recognitions", "schedule": 3600.0},
    "sweep-orphan-photos": {"task": "recognition.sweep_orphan_photos", "schedule": 6 * 3600.0},
    "sweep-orphan-objects": {"task": "galleries.sweep_orphan_objects", "schedule": 6 * 3600.0},
    "backfill-default-model": {"task": "galleries.backfill_default_model", "schedule": 60.0},
    "prune-pgvector-indexes": {"task": "galleries.prune_pgvector_indexes", "schedule": 24 * 3600.0},
}
app.autodiscover_tasks()
