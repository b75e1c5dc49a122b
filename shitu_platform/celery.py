"""The Celery app: queues `default` (imports, indexing), `inference` (recognition) and `training`."""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shitu_platform.settings")

app = Celery("shitu_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("inference"), Queue("training"))
app.autodiscover_tasks()
