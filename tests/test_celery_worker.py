"""A real Celery worker consumes from the embedded Redis and answers."""
import pytest

from shitu_platform.tasks import ping


@pytest.mark.slow
def test_worker_round_trip(celery_worker):
    assert ping.apply_async(queue="default").get(timeout=60) == "pong"
    assert ping.apply_async(queue="inference").get(timeout=60) == "pong"
