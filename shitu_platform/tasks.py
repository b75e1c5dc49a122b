"""Platform-level tasks: a round trip that proves a worker is consuming."""
from celery import shared_task


@shared_task(name="shitu_platform.ping", db_scope="system")
def ping() -> str:
    return "pong"
