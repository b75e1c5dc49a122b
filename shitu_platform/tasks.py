"""Platform-level tasks: a round trip that proves a worker is consuming."""
from celery import shared_task


@shared_task(name="shitu_platform.ping")
def ping() -> str:
    return "pong"


@shared_task(name="shitu_platform.purge_expired_recognitions")
def purge_expired_recognitions() -> int:
    from shitu_platform.sweeps import recognitions_purge_expired

    return recognitions_purge_expired()


@shared_task(name="shitu_platform.sweep_orphan_objects")
def sweep_orphan_objects() -> int:
    from shitu_platform.sweeps import orphan_objects_sweep

    return orphan_objects_sweep()
