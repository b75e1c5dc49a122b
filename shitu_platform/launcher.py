"""The embedded stack as one command: PostgreSQL + pgvector, Redis, migrations, a Celery worker, the web app.

Services whose URL is given in the environment (DATABASE_URL, REDIS_URL) are used as they are and
nothing embedded starts for them. Ctrl-C stops the children and the servers this launcher started.
Children write to `var/log/<name>.log`; the terminal shows a status line, the banner and errors (`Console`).
"""
from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
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
from typing import TextIO

from django.conf import settings
from django.core.management import call_command

from shitu_platform.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresSettings, ProcessGroup, RedisSettings


class Console:
    """What the launcher's terminal shows: one status line (rewritten in place on a terminal, left out in a pipe),
    permanent lines (the banner, stop), and errors on stderr. The children's chatter goes to their log files."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.interactive = self.out.isatty()
        self._status_shown = ""

    def status(self, text: str) -> None:
        if self.interactive and text != self._status_shown:
            self.out.write(f"\r\x1b[2K{text}")
            self.out.flush()
            self._status_shown = text

    def line(self, text: str = "") -> None:
        self._clear_status()
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self._clear_status()
        self.err.write(text + "\n")
        self.err.flush()

    def bold(self, text: str) -> str:
        return f"\x1b[1;32m{text}\x1b[0m" if self.interactive else text

    def _clear_status(self) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[2K")
            self._status_shown = ""


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def display_paths(paths: list[Path]) -> str:
    """Paths grouped by folder in shell brace form, e.g. `var/log/{web,worker}.log` (pastes into `tail -f`)."""
    by_folder: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        by_folder.setdefault((display_path(path.parent), path.suffix), []).append(path.stem)
    return " ".join(f"{folder}/{stems[0]}{suffix}" if len(stems) == 1 else f"{folder}/{{{','.join(stems)}}}{suffix}"
                    for (folder, suffix), stems in by_folder.items())


@dataclass
class StackTimings:
    seconds_by_step: dict[str, float] = field(default_factory=dict)
    announce: Callable[[str], None] | None = None  # told each step as it begins (the console's status line)

    def measure(self, step: str, action: Callable[[], object]) -> object:
        if self.announce is not None:
            self.announce(step)
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


def start_servers(timings: StackTimings, servers: EmbeddedServers | None = None) -> EmbeddedServers:
    """Start the embedded servers into `servers` as they come up, so a failure or Ctrl-C half-way still finds the
    ones already started to stop."""
    servers = servers if servers is not None else EmbeddedServers()
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
    timings.measure("collectstatic", collect_static_if_changed)


def collect_static_if_changed() -> bool:
    """collectstatic compresses every file again on each run (3 s of a restart here); skip it while the static sources
    (names, sizes, modification times) are those it collected last. True when it ran."""
    from django.contrib.staticfiles import finders

    sources = sorted(
        f"{path}\0{os.stat(storage.path(path)).st_size}\0{os.stat(storage.path(path)).st_mtime_ns}"
        for finder in finders.get_finders() for path, storage in finder.list([])
    )
    digest = hashlib.sha256("\n".join([str(settings.STATIC_ROOT), *sources]).encode()).hexdigest()
    stamp = Path(settings.VAR_DIR) / "collectstatic.sha256"
    if stamp.is_file() and stamp.read_text() == digest and Path(settings.STATIC_ROOT).is_dir():
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.write_text(digest)
    return True


CELERY_WORKER_READY = r"\] \S+@\S+ ready\."  # "[... INFO/MainProcess] embedded@host ready."
# A PYTHONWARNINGS filter: "ignore" + the start of celery.platforms.ROOT_DISCOURAGED (matched as a literal prefix).
CELERY_ROOT_WARNING = "ignore:You're running the worker with superuser privileges"
# Paddle warns on import that it found no ccache, which only matters for compiling C++ extensions (we never do).
PADDLE_CCACHE_WARNING = "ignore:No ccache found"
# glibc gives each new thread its own malloc arena, up to 8 per core; the web's request threads and the workers'
# model and SIFT threads each grow one, and freed image buffers stay spread over them. Two arenas held the worker's
# RSS under load about 60-90 MB lower at the same throughput (bench/load.py --malloc-arenas 0,2, README Figures).
# An operator's own MALLOC_ARENA_MAX is kept.
MALLOC_ARENAS = 2


@dataclass(frozen=True)
class ChildSpec:
    argv: list[str]
    env: dict[str, str]
    restart: bool  # workers are restarted when they die; the web server dying stops the stack
    ready_line: str | None = None  # a regex its log shows once it is ready (the web server answers /readyz instead)


def child_specs(*, host: str, port: int, web_workers: int, with_worker: bool) -> dict[str, ChildSpec]:
    python = sys.executable
    env = {
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
        "SHITU_VAR_DIR": str(settings.VAR_DIR),
        "SHITU_EMBEDDED_PG_PORT": str(settings.EMBEDDED_PG_PORT),
        "SHITU_EMBEDDED_REDIS_PORT": str(settings.EMBEDDED_REDIS_PORT),
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", str(MALLOC_ARENAS)),
    }
    # Celery warns on every start that a worker runs as root. It refuses root outright only when pickle is accepted;
    # ours accept JSON alone (settings.CELERY_ACCEPT_CONTENT), and the launcher runs its workers as the user who
    # started it (the Docker image has its own user), so the warning says nothing the user can act on.
    quiet = [os.environ.get("PYTHONWARNINGS", ""), CELERY_ROOT_WARNING, PADDLE_CCACHE_WARNING]
    worker_env = {**env, "PYTHONWARNINGS": ",".join(filter(None, quiet))}
    # The web server first: it decides when the stack is up (the launcher starts the others once it answers).
    specs: dict[str, ChildSpec] = {}
    specs["web"] = ChildSpec([python, "-m", "gunicorn", "shitu_platform.wsgi:application", "--bind", f"{host}:{port}",
                              "--workers", str(web_workers), "--config", "python:shitu_platform.gunicorn_conf"], env, restart=False)
    if with_worker:
        specs["worker"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "worker", "-Q", "default,inference",
                                     "--concurrency", "1", "--loglevel", "INFO", "-n", "embedded@%h"], worker_env, restart=True,
                                    ready_line=CELERY_WORKER_READY)
        # Fine-tunes run minutes: a worker of their own, so recognitions and imports never queue behind one.
        specs["training-worker"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "worker", "-Q", "training",
                                              "--concurrency", "1", "--loglevel", "INFO", "-n", "training@%h"], worker_env, restart=True,
                                             ready_line=CELERY_WORKER_READY)
        specs["beat"] = ChildSpec([python, "-m", "celery", "-A", "shitu_platform", "beat", "--loglevel", "INFO",
                                   "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule")], worker_env, restart=True,
                                  ready_line=r"beat: Starting\.\.\.")
    return specs


def start_child(group: ProcessGroup, name: str, spec: ChildSpec) -> None:
    group.start(name, spec.argv, env=spec.env, cwd=Path(settings.BASE_DIR))


class ReadyWatch:
    """Which children have not yet logged their ready line since this launcher started them (logs are appended to
    across starts, so each child's log is read from where it ended at its start)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[Path, int, re.Pattern[str]]] = {}

    def start(self, group: ProcessGroup, name: str, spec: ChildSpec) -> None:
        log_path = group.log_dir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        start_child(group, name, spec)
        if spec.ready_line is not None:
            self._pending[name] = (log_path, offset, re.compile(spec.ready_line))

    def waiting_for(self) -> list[str]:
        for name, (log_path, offset, ready_line) in list(self._pending.items()):
            with open(log_path, "rb") as log_file:
                log_file.seek(offset)
                if ready_line.search(log_file.read().decode(errors="replace")):
                    del self._pending[name]
        return list(self._pending)


def supervise(group: ProcessGroup, specs: dict[str, ChildSpec], *, max_restarts_per_minute: int = 5, log=print,
              tick: Callable[[], None] | None = None) -> tuple[str, int]:
    """Restart dying workers (a crashed or killed worker must not take the platform down); return when the web
    server exits or a worker keeps dying. `tick` is called about once a second meanwhile."""
    restarts: dict[str, list[float]] = {}
    while True:
        exited = group.wait_any(timeout=1.0)
        if exited is None:
            if tick is not None:
                tick()
            continue
        name, code = exited
        spec = specs[name]
        recent = [t for t in restarts.get(name, []) if t > time.monotonic() - 60]
        if not spec.restart or len(recent) >= max_restarts_per_minute:
            return name, code
        log(f"{name} exited with code {code}; restarting it")
        restarts[name] = recent + [time.monotonic()]
        start_child(group, name, spec)


class LauncherError(RuntimeError):
    """A start-up step failed in a way the user can read and act on (shown without a traceback)."""


class StackNotReady(LauncherError):
    """The web app did not answer /readyz with 200 in time (the message carries its last answer)."""


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
    raise StackNotReady(f"the web app did not become ready in {timeout:.0f}s: {last_answer}")


def login_and_fetch_dashboard(base_url: str, username: str, password: str) -> str:
    """Log in through the real login form (CSRF included) and return the dashboard page's HTML."""
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    login_page = opener.open(f"{base_url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
    if token is None:
        raise LauncherError("login page has no CSRF token")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1), "next": "/dashboard/"}
    ).encode()
    request = urllib.request.Request(f"{base_url}/accounts/login/", data=form, headers={"Referer": f"{base_url}/accounts/login/"})
    response = opener.open(request, timeout=10)
    if not response.geturl().rstrip("/").endswith("/dashboard"):
        raise LauncherError(f"login did not reach the dashboard (ended at {response.geturl()})")
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


def gallery_import_via_api(base_url: str, api_key: str, name: str, archive_name: str, archive: bytes | Callable[[], bytes],
                           out: TextIO | None = None, *, progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Create a gallery through the API and import the archive (bytes, or a function making them only when needed);
    skipped when the gallery has images. Progress goes to `progress(done, total)` when given, else to a progress bar
    on `out`."""
    status, page = api_call(base_url, api_key, "GET", "/api/v1/galleries/?limit=200")
    gallery = next((g for g in page.get("results", []) if g["name"] == name), None)
    if gallery is None:
        status, gallery = api_call(base_url, api_key, "POST", "/api/v1/galleries/", json.dumps({"name": name}).encode())
    if gallery.get("image_count"):
        return gallery
    body, content_type = multipart_body("archive", archive_name, archive() if callable(archive) else archive)
    status, job = api_call(base_url, api_key, "POST", f"/api/v1/galleries/{gallery['id']}/imports/", body, content_type)
    if status != 202:
        raise LauncherError(f"import refused: {job}")
    if progress is None:
        from tqdm import tqdm

        bar = tqdm(total=job["total_rows"] or None, desc="importing gallery", unit="img", file=out or sys.stderr)

        def progress(done: int, total: int | None) -> None:
            bar.total, bar.n = total, done
            bar.refresh()
    else:
        bar = None
    while job["status"] not in ("done", "failed"):
        time.sleep(0.5)
        _, job = api_call(base_url, api_key, "GET", f"/api/v1/imports/{job['id']}/")
        progress(job["next_row"], job["total_rows"])
    if bar is not None:
        bar.close()
    if job["status"] != "done":
        raise LauncherError(f"import failed: {job['failure_reason']}")
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
        rows.append((photo.label, best.get("label", NO_MATCH if status == 200 else f"HTTP {status}"), best.get("score", 0.0), elapsed))
    return rows


NO_MATCH = "(nothing)"


@dataclass(frozen=True)
class SampleSummary:
    total: int
    right: int
    no_match: int
    wrong: int

    @classmethod
    def of(cls, rows: list[tuple[str, str, float, float]]) -> SampleSummary:
        right = sum(expected == answered for expected, answered, _, _ in rows)
        no_match = sum(answered == NO_MATCH for _, answered, _, _ in rows)
        return cls(total=len(rows), right=right, no_match=no_match, wrong=len(rows) - right - no_match)

    def describe(self) -> str:
        return (f"{self.right}/{self.total} right, {self.no_match} no match, "
                f"{self.wrong or 'none'} wrong")


def sample_table(rows: list[tuple[str, str, float, float]]) -> str:
    """One line per sample photo: what it shows, what the API answered, score and time."""
    lines = []
    for expected, answered, score, milliseconds in rows:
        mark = "ok  " if expected == answered else ("none" if answered == NO_MATCH else "MISS")
        lines.append(f"  {mark} {expected[:28]:28} -> {answered[:28]:28} score {score:.3f}  {milliseconds:6.0f} ms")
    return "\n".join(lines)
