"""The embedded stack as one command: PostgreSQL + pgvector, Redis, migrations, a Celery worker, the web app.

Services whose URL is given in the environment (DATABASE_URL, REDIS_URL) are used as they are and
nothing embedded starts for them. Ctrl-C stops the children and the servers this launcher started.
"""
from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from shitu_platform.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresSettings, ProcessGroup, RedisSettings


@dataclass
class StackTimings:
    seconds_by_step: dict[str, float] = field(default_factory=dict)

    def measure(self, step: str, action: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = action()
        self.seconds_by_step[step] = time.perf_counter() - started
        return result

    def report(self) -> str:
        return ", ".join(f"{step} {seconds:.2f}s" for step, seconds in self.seconds_by_step.items())


@dataclass
class EmbeddedServers:
    """The servers this launcher started (None where an external one is configured)."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        """Bounded: Redis gets 5 s before SIGKILL, PostgreSQL 15 s of fast shutdown before an immediate one."""
        if self.redis is not None:
            self.redis.stop(timeout=5)
        if self.postgres is not None:
            self.postgres.stop(timeout=15)


def embedded_postgres() -> EmbeddedPostgres:
    return EmbeddedPostgres(PostgresSettings(data_dir=Path(settings.VAR_DIR) / "postgres", port=settings.EMBEDDED_PG_PORT))


def embedded_redis() -> EmbeddedRedis:
    return EmbeddedRedis(RedisSettings(data_dir=Path(settings.VAR_DIR) / "redis", port=settings.EMBEDDED_REDIS_PORT))


def start_servers(timings: StackTimings) -> EmbeddedServers:
    servers = EmbeddedServers()
    if settings.USES_EMBEDDED_DATABASE:
        servers.postgres = embedded_postgres()
        timings.measure("postgres", servers.postgres.start)
    if settings.USES_EMBEDDED_REDIS:
        servers.redis = embedded_redis()
        timings.measure("redis", servers.redis.start)
    return servers


def prepare_database_and_storage(timings: StackTimings) -> None:
    from shitu_platform.object_store import object_store

    timings.measure("migrate", lambda: call_command("migrate", interactive=False, verbosity=0))
    timings.measure("storage", lambda: object_store().ensure_ready())
    timings.measure("collectstatic", lambda: call_command("collectstatic", interactive=False, verbosity=0))


@dataclass(frozen=True)
class ChildSpec:
    argv: list[str]
    env: dict[str, str]
    restart: bool  # workers are restarted when they die; the web server dying stops the stack


def child_specs(*, host: str, port: int, web_workers: int, with_worker: bool) -> dict[str, ChildSpec]:
    python = sys.executable
    env = {
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
        "SHITU_VAR_DIR": str(settings.VAR_DIR),
        "SHITU_EMBEDDED_PG_PORT": str(settings.EMBEDDED_PG_PORT),
        "SHITU_EMBEDDED_REDIS_PORT": str(settings.EMBEDDED_REDIS_PORT),
    }
    specs: dict[str, ChildSpec] = {}
    if with_worker:
        specs["worker"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "worker", "-Q", "default,inference",
                                     "--concurrency", "1", "--loglevel", "INFO", "-n", "embedded@%h"], env, restart=True)
        # Fine-tunes run minutes: a worker of their own, so recognitions and imports never queue behind one.
        specs["training-worker"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "worker", "-Q", "training",
                                              "--concurrency", "1", "--loglevel", "INFO", "-n", "training@%h"], env, restart=True)
        specs["beat"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "beat", "--loglevel", "INFO",
                                   "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule")], env, restart=True)
    specs["web"] = ChildSpec([python, "-m", "gunicorn", "shitu_platform.wsgi:application", "--bind", f"{host}:{port}",
                              "--workers", str(web_workers), "--config", "python:shitu_platform.gunicorn_conf"], env, restart=False)
    return specs


def start_child(group: ProcessGroup, name: str, spec: ChildSpec) -> None:
    group.start(name, spec.argv, env=spec.env, cwd=Path(settings.BASE_DIR))


def supervise(group: ProcessGroup, specs: dict[str, ChildSpec], *, max_restarts_per_minute: int = 5, log=print) -> tuple[str, int]:
    """Restart dying workers (a crashed or killed worker must not take the platform down); return when the web
    server exits or a worker keeps dying."""
    restarts: dict[str, list[float]] = {}
    while True:
        name, code = group.wait_any()
        spec = specs[name]
        recent = [t for t in restarts.get(name, []) if t > time.monotonic() - 60]
        if not spec.restart or len(recent) >= max_restarts_per_minute:
            return name, code
        log(f"{name} exited with code {code}; restarting it")
        restarts[name] = recent + [time.monotonic()]
        start_child(group, name, spec)


def wait_until_ready(base_url: str, timeout: float = 60) -> dict:
    """Poll /readyz until it answers 200; raise with its last answer otherwise."""
    deadline = time.monotonic() + timeout
    last_answer: object = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            last_answer = error.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last_answer = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"the web app did not become ready in {timeout:.0f}s: {last_answer}")


def login_and_fetch_dashboard(base_url: str, username: str, password: str) -> str:
    """Log in through the real login form (CSRF included) and return the dashboard page's HTML."""
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    login_page = opener.open(f"{base_url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
    if token is None:
        raise RuntimeError("login page has no CSRF token")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1), "next": "/dashboard/"}
    ).encode()
    request = urllib.request.Request(f"{base_url}/accounts/login/", data=form, headers={"Referer": f"{base_url}/accounts/login/"})
    response = opener.open(request, timeout=10)
    if not response.geturl().rstrip("/").endswith("/dashboard"):
        raise RuntimeError(f"login did not reach the dashboard (ended at {response.geturl()})")
    return response.read().decode()


def api_request(base_url: str, api_key: str, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, dict, Message]:
    """One API call with the key: status, JSON body and response headers (error statuses are returned, not raised)."""
    request = urllib.request.Request(f"{base_url}{path}", data=body, method=method,
                                     headers={"Authorization": f"Api-Key {api_key}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), error.headers


def api_call(base_url: str, api_key: str, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
    status, answer, _ = api_request(base_url, api_key, method, path, body, content_type)
    return status, answer


def multipart_body(field: str, filename: str, data: bytes, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in (fields or {}).items()]
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return b"".join(parts) + head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def gallery_import_via_api(base_url: str, api_key: str, name: str, archive_name: str, archive: bytes, out) -> dict:
    """Create a gallery through the API and import the archive, with a progress bar; skipped when it has images."""
    from tqdm import tqdm

    status, page = api_call(base_url, api_key, "GET", "/api/v1/galleries/?limit=200")
    gallery = next((g for g in page.get("results", []) if g["name"] == name), None)
    if gallery is None:
        status, gallery = api_call(base_url, api_key, "POST", "/api/v1/galleries/", json.dumps({"name": name}).encode())
    if gallery.get("image_count"):
        return gallery
    body, content_type = multipart_body("archive", archive_name, archive)
    status, job = api_call(base_url, api_key, "POST", f"/api/v1/galleries/{gallery['id']}/imports/", body, content_type)
    if status != 202:
        raise RuntimeError(f"import refused: {job}")
    with tqdm(total=job["total_rows"] or None, desc="importing gallery", unit="img", file=out) as bar:
        while job["status"] not in ("done", "failed"):
            time.sleep(0.5)
            _, job = api_call(base_url, api_key, "GET", f"/api/v1/imports/{job['id']}/")
            bar.total = job["total_rows"]
            bar.n = job["next_row"]
            bar.refresh()
    if job["status"] != "done":
        raise RuntimeError(f"import failed: {job['failure_reason']}")
    return gallery


def demo_recognise(base_url: str, api_key: str, gallery_id: int, photos: list) -> list[tuple[str, str, float, float]]:
    """Send each sample photo to the recognition API: (expected, answered, score, milliseconds)."""
    rows = []
    for photo in photos:
        body, content_type = multipart_body("image", photo.filename, photo.data, {"gallery": str(gallery_id)})
        started = time.perf_counter()
        status, answer = api_call(base_url, api_key, "POST", "/api/v1/recognitions/", body, content_type)
        elapsed = (time.perf_counter() - started) * 1000
        best = answer.get("objects", [{}])[0] if answer.get("objects") else {}
        rows.append((photo.label, best.get("label", "(nothing)" if status == 200 else f"HTTP {status}"), best.get("score", 0.0), elapsed))
    return rows
