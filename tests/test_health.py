"""Liveness and readiness probes against the real database, Redis and object store."""
import pytest

from shitu_platform.embedded import free_port


def test_healthz_is_ok_without_any_service(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_when_database_redis_and_storage_answer(client, redis_url):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert {name for name, check in response.json()["checks"].items() if check["ok"]} == {"database", "redis", "storage"}


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_down(client, settings, redis_url):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True
