"""Faults against the real embedded stack (`manage.py shitu demo` in a subprocess): Redis and PostgreSQL restarts
and a SIGKILLed worker. During an outage the API answers 503 with a code; afterwards it recovers by itself."""
from __future__ import annotations

import json
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

from shitu_platform.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresSettings, RedisSettings, free_port
from shitu_platform.demo_data import demo_query_photos
from shitu_platform.launcher import api_call, multipart_body
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
    running = Stack()
    running.start()
    yield running
    running.stop()


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
    assert status == 200 and galleries["results"][0]["image_count"] == 36  # nothing lost


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


def _belongs_to(process: psutil.Process, stack: Stack) -> bool:
    try:
        return process.environ().get("SHITU_VAR_DIR") == str(stack.var_dir)
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return False
