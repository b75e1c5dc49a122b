"""The Celery app: queues `default` (imports, indexing), `inference` (recognition) and `training`."""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shitu_platform.settings")

app = Celery("shitu_platform")
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
