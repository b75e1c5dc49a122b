"""Faults against the real stack (`manage.py shitu demo` in a subprocess, its objects in moto's S3 server on
loopback): Redis, PostgreSQL and object-storage outages and a SIGKILLed worker. During an outage the API answers
503 with a code and writes nothing half; afterwards it recovers by itself. One stack serves every fault (each
test leaves it recovered): a stack with its demo gallery costs ~16 s of the suite to start."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from moto.server import ThreadedMotoServer

from shitu_platform.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresSettings, RedisSettings, free_port
from shitu_platform.demo_data import demo_query_photos
from shitu_platform.launcher import api_call, api_request, multipart_body
from tests.support.images import product_photo

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.var_dir = Path(tempfile.mkdtemp(prefix="shitu-faults-"))
        os.chmod(self.var_dir, 0o711)
        self.pg_port, self.redis_port, self.web_port = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
        self.env.update(SHITU_VAR_DIR=str(self.var_dir), SHITU_EMBEDDED_PG_PORT=str(self.pg_port),
                        SHITU_EMBEDDED_REDIS_PORT=str(self.redis_port), DJANGO_SETTINGS_MODULE="shitu_platform.settings",
                        SHITU_RECOGNITION_TIMEOUT="20",
                        # These tests break the stack's servers, not its models: the baseline extractor (a real
                        # registry model, no network) keeps the demo's first start to seconds instead of ~20 s.
                        SHITU_EXTRACTOR="colour-histogram", SHITU_DETECTOR="none")
        self.env.update(extra_env or {})
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "shitu", "demo", "--port", str(self.web_port)],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines = []
        for line in self.process.stdout:
            lines.append(line)
            if "ShiTu Platform is up" in line:
                break
        assert any("ShiTu Platform is up" in line for line in lines), "".join(lines)[-4000:]
        # Keep reading: the launcher streams its children's logs, and a full pipe would block it (and its Ctrl-C).
        threading.Thread(target=lines.extend, args=(self.process.stdout,), daemon=True).start()
        self.api_key = json.loads((self.var_dir / "demo-credentials.json").read_text())["api_key"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        subprocess.run([sys.executable, "manage.py", "shitu", "stop"], cwd=REPO_ROOT, env=self.env, capture_output=True, timeout=60)

    @property
    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(PostgresSettings(data_dir=self.var_dir / "postgres", port=self.pg_port))

    @property
    def redis(self) -> EmbeddedRedis:
        return EmbeddedRedis(RedisSettings(data_dir=self.var_dir / "redis", port=self.redis_port))

    def recognise(self, colour=(196, 30, 38)) -> tuple[int, dict]:
        body, content_type = multipart_body("image", "q.jpg", product_photo(colour, size=(300, 400)))
        return api_call(self.base, self.api_key, "POST", "/api/v1/recognitions/", body, content_type)


def _eventually(check, timeout: float = 60.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"not recovered in {timeout}s: {what} (last: {last})")


def _healthz(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def stack():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    running = Stack({"STORAGE_BACKEND": "s3", "S3_ENDPOINT": f"127.0.0.1:{port}", "S3_ACCESS_KEY": "testing",
                     "S3_SECRET_KEY": "testing", "S3_BUCKET": "shitu-faults", "S3_REGION": "us-east-1"})
    running.moto, running.moto_port = moto, port
    running.start()
    yield running
    running.stop()
    running.moto.stop()


def test_redis_restart_gives_503_then_recovers(stack):
    assert stack.recognise()[0] == 200
    stack.redis.stop()
    try:
        status, body = stack.recognise()
        assert status == 503 and body["error"]["code"] == "service_unavailable"
        assert _healthz(stack.base) == 200
    finally:
        stack.redis.start()
    _eventually(lambda: stack.recognise()[0] == 200, what="recognition after Redis came back")


def test_postgres_restart_gives_503_then_recovers(stack):
    images_before = api_call(stack.base, stack.api_key, "GET", "/api/v1/galleries/")[1]["results"][0]["image_count"]
    assert images_before >= 36  # the demo gallery's
    stack.postgres.stop()
    try:
        status, body = stack.recognise()
        assert status == 503 and body["error"]["code"] == "service_unavailable"
        status, body = api_call(stack.base, stack.api_key, "GET", "/api/v1/galleries/")
        assert status == 503
        assert _healthz(stack.base) == 200
    finally:
        stack.postgres.start()
    _eventually(lambda: stack.recognise()[0] == 200, what="recognition after PostgreSQL came back")
    status, galleries = api_call(stack.base, stack.api_key, "GET", "/api/v1/galleries/")
    assert status == 200 and galleries["results"][0]["image_count"] == images_before  # nothing lost


def test_killed_worker_is_restarted_and_answers_the_request_sent_meanwhile(stack):
    """SIGKILL the inference worker: the launcher restarts it and the request sent meanwhile is answered, not lost."""
    worker = next(p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
                  and "celery" in p.info["cmdline"] and "default,inference" in p.info["cmdline"] and _belongs_to(p, stack))
    for child in worker.children(recursive=True):
        child.kill()
    worker.kill()
    cola = demo_query_photos()[0]
    body, content_type = multipart_body("image", cola.filename, cola.data, {"run_async": "true"})
    status, answer = api_call(stack.base, stack.api_key, "POST", "/api/v1/recognitions/", body, content_type)
    assert status == 202 and answer["status"] == "queued"
    done = _eventually(lambda: (lambda r: r if r[1].get("status") == "done" else None)(
        api_call(stack.base, stack.api_key, "GET", answer["url"])), timeout=120, what="recognition answered by the restarted worker")
    assert done[1]["objects"][0]["label"] == cola.label


def _readyz(stack) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{stack.base}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_storage_outage_gives_503_and_recovers(stack):
    cola = demo_query_photos()[0]
    assert api_call(stack.base, stack.api_key, "POST", "/api/v1/recognitions/", *multipart_body("image", "q.jpg", cola.data))[0] == 200
    _, galleries = api_call(stack.base, stack.api_key, "GET", "/api/v1/galleries/")
    gallery = galleries["results"][0]
    _, products = api_call(stack.base, stack.api_key, "GET", f"/api/v1/products/?gallery={gallery['id']}")
    product_id = products["results"][0]["id"]
    _, before = api_call(stack.base, stack.api_key, "GET", "/api/v1/recognitions/?limit=500")

    stack.moto.stop()  # the moto backend keeps its data in this process: a restart brings the same objects back
    try:
        status, body, headers = api_request(stack.base, stack.api_key, "POST", "/api/v1/recognitions/",
                                            *multipart_body("image", "q.jpg", cola.data))
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        assert int(headers["Retry-After"]) >= 1  # clients are told when to come back
        status, body = api_call(stack.base, stack.api_key, "POST", f"/api/v1/products/{product_id}/images/",
                                *multipart_body("image", "new.jpg", demo_query_photos()[1].data))
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        status, ready = _readyz(stack)
        assert status == 503 and ready["checks"]["storage"]["ok"] is False
        assert _healthz(stack.base) == 200
        _, during = api_call(stack.base, stack.api_key, "GET", "/api/v1/recognitions/?limit=500")
        assert during["count"] == before["count"], "a recognition row was written without its photo"
    finally:
        stack.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=stack.moto_port, verbose=False)
        stack.moto.start()

    _eventually(lambda: _readyz(stack)[0] == 200, what="readiness after storage came back")
    status, answer = api_call(stack.base, stack.api_key, "POST", "/api/v1/recognitions/", *multipart_body("image", "q.jpg", cola.data))
    assert status == 200 and answer["objects"][0]["label"] == cola.label
    status, uploaded = api_call(stack.base, stack.api_key, "POST", f"/api/v1/products/{product_id}/images/",
                                *multipart_body("image", "new.jpg", demo_query_photos()[1].data))
    assert status == 201 and uploaded[0]["created"] is True
    _eventually(lambda: api_call(stack.base, stack.api_key, "GET", f"/api/v1/reference-images/{uploaded[0]['id']}/")[1]["status"] == "ready",
                what="the upload embedded after the outage")


def _belongs_to(process: psutil.Process, stack: Stack) -> bool:
    try:
        return process.environ().get("SHITU_VAR_DIR") == str(stack.var_dir)
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return False
