"""Session-wide real services: PostgreSQL + pgvector and Redis, started by the launcher's own code.

Nothing embedded starts when DATABASE_URL / REDIS_URL are set (then those servers are used).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from shitu_platform.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresSettings, RedisSettings

pytest_plugins = ["tests.support.file_order"]  # the longest test files first (see there)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Started in the background of a non-interactive shell (nohup, `cmd &`, some CI runners), pytest inherits SIGINT
# ignored, and so would every process the suite starts: the launcher would sleep through the Ctrl-C the launcher and
# fault tests send it, and each stop would wait out its 60 s timeout. Children inherit a handled signal as default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def embedded_postgres() -> Iterator[EmbeddedPostgres | None]:
    if not settings.USES_EMBEDDED_DATABASE:
        yield None
        return
    server = EmbeddedPostgres(
        PostgresSettings(data_dir=Path(settings.VAR_DIR) / "postgres", port=settings.EMBEDDED_PG_PORT)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(embedded_postgres: EmbeddedPostgres | None) -> None:
    """Runs before pytest-django creates the test database, so the server is up by then."""


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """pytest-django's, and at the end of the session the test database's other sessions are ended before it is
    dropped. One idle session was always left by then (its holder was not traced), and PostgreSQL's DROP DATABASE
    waits 5 s for other sessions before it fails: 5 s at the end of every test process, added to the suite's time."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        connection.close()


@pytest.fixture(scope="session", autouse=True)
def redis_url() -> Iterator[str]:
    """Redis runs for the whole session: it is the Celery broker and the cache behind rate limits."""
    if not settings.USES_EMBEDDED_REDIS:
        yield settings.REDIS_URL
        return
    server = EmbeddedRedis(RedisSettings(data_dir=Path(settings.VAR_DIR) / "redis", port=settings.EMBEDDED_REDIS_PORT))
    url = server.start()
    yield url
    server.stop()


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class WorkerProcesses:
    """Starts real Celery worker processes on the test database; tests may kill and restart them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str = "test", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="shitu_platform.settings_test", DATABASE_URL=_test_database_url())
        env.update(extra_env or {})
        if not settings.USES_EMBEDDED_REDIS:
            env["REDIS_URL"] = settings.REDIS_URL
        log_path = self.log_dir / f"celery-{name}-{len(self.processes)}.log"
        # The log is shared by every worker of this name in the session: only what this one writes says it is ready.
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "shitu_platform", "worker", "--pool", "solo",
                 "-Q", "default,inference,training", "--loglevel", "INFO", "-n", f"{name}-{os.getpid()}@%h",
                 # workers find each other by control.ping, which needs neither mingle (it waits a second at start
                 # for neighbours to sync revoked tasks with) nor gossip
                 "--without-mingle", "--without-gossip"],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.processes.append(worker)
        _wait_for_worker(worker, log_path, offset=offset)
        return worker

    def stop_all(self) -> None:
        """SIGKILL: the test is over and its rows are about to be flushed, so nothing is left worth a warm shutdown
        (1.6 s per worker). A task cut short stays unacked in Redis far past the session (visibility timeout)."""
        for worker in self.processes:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=20)


class SharedWorker:
    """The default worker, started once and kept for every test that needs no worker of its own: a start costs
    seconds (Django and Paddle imports), and each test brings its own tenant and rows, so a warm worker holds
    nothing another test can see (its caches are keyed by row ids, which a flush does not reuse)."""

    def __init__(self, log_dir: Path) -> None:
        self.processes = WorkerProcesses(log_dir)
        self.worker: subprocess.Popen | None = None

    def running(self) -> subprocess.Popen:
        if self.worker is None or self.worker.poll() is not None:
            self.worker = self.processes.start("shared")
        return self.worker

    def drain(self, timeout: float = 10) -> None:
        """Drop the tasks a test left queued and let the worker finish what it already holds, so the next test starts
        on an idle worker and nothing runs against rows about to be flushed. Leftover work that outlasts `timeout`
        (a gallery's calibration refit can take minutes) is cut short as a per-test worker's was: the worker is
        killed, and the next test starts a fresh one."""
        from shitu_platform.celery import app
        from shitu_platform.tasks import ping

        if self.worker is None or self.worker.poll() is not None:
            return
        app.control.purge()
        deadline = time.monotonic() + timeout
        try:
            for queue in ("default", "inference", "training"):
                ping.apply_async(queue=queue).get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - a busy or stuck worker is replaced, whatever its trouble
            self.stop()

    def stop(self) -> None:
        self.processes.stop_all()
        self.worker = None


@pytest.fixture(scope="session")
def shared_worker(redis_url: str) -> Iterator[SharedWorker]:
    shared = SharedWorker(Path(settings.VAR_DIR))
    yield shared
    shared.stop()


@pytest.fixture()
def celery_workers(shared_worker: SharedWorker, transactional_db: None) -> Iterator[WorkerProcesses]:
    """Workers a test starts itself (its own environment, or to kill them): the shared one is stopped first, so
    they are the only consumers of the queues."""
    shared_worker.stop()
    workers = WorkerProcesses(Path(settings.VAR_DIR))
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture()
def celery_worker(shared_worker: SharedWorker, transactional_db: None) -> Iterator[subprocess.Popen]:
    """A real Celery worker process on the test database (the session's shared one); tests using it see committed
    rows only, and must not kill it (use `celery_workers` for that)."""
    worker = shared_worker.running()
    yield worker
    shared_worker.drain()


def _wait_for_worker(worker: subprocess.Popen, log_path: Path, *, offset: int = 0, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{log_path.read_text()[-3000:]}")
        with log_path.open("rb") as log:
            log.seek(offset)
            if b"ready." in log.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"celery worker not ready after {timeout}s:\n{log_path.read_text()[-3000:]}")


# --- factories for tenant-owned fixtures ---

class TenantWorld:
    """A tenant with one user per role, and helpers to call the API as them."""

    def __init__(self, name: str) -> None:
        from django.contrib.auth import get_user_model

        from shitu_platform.tenancy.models import Role
        from shitu_platform.tenancy.services import membership_set, tenant_create

        user_model = get_user_model()
        slug = name.lower().replace(" ", "-")
        self.password = "correct-horse-battery"
        self.owner = user_model.objects.create_user(f"{slug}-owner", password=self.password)
        self.tenant = tenant_create(name=name, owner=self.owner)
        self.users = {Role.OWNER: self.owner}
        for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
            user = user_model.objects.create_user(f"{slug}-{role}", password=self.password)
            membership_set(tenant=self.tenant, user=user, role=role)
            self.users[role] = user

    def api_key(self, role: str = "member") -> str:
        from shitu_platform.tenancy.services import api_key_create

        _, raw_key = api_key_create(tenant=self.tenant, name=f"test {role}", role=role)
        return raw_key

    def client(self, role: str = "owner"):
        """A logged-in Django test client (dashboard and session-authenticated API)."""
        from django.test import Client

        client = Client()
        client.force_login(self.users[role])
        return client

    def key_client(self, role: str = "member"):
        """A DRF client authenticated by an API key of this tenant."""
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.api_key(role)}")
        return client


@pytest.fixture()
def tenant_a(db: None) -> TenantWorld:
    return TenantWorld("Acme Foods")


@pytest.fixture()
def tenant_b(db: None) -> TenantWorld:
    return TenantWorld("Bolt Drinks")


@pytest.fixture(scope="session", autouse=True)
def object_store_ready() -> None:
    """The object store's bucket/root exists, as the launcher makes it at start-up."""
    from shitu_platform.object_store import object_store

    object_store().ensure_ready()


@pytest.fixture(autouse=True)
def fresh_cache(redis_url: str) -> None:
    """Rate-limit and login-failure counters live in the cache (its own Redis database): each test starts clean."""
    from django.core.cache import cache

    cache.clear()



# Slow by construction, whatever their own marks say: a real worker process costs seconds to start (Django + Paddle
# imports; the shared one is started by whichever test needs it first, and again after a test with its own workers),
# and a browser test needs Chromium (3 s to launch) and drives whole pages. `-m "not slow"` leaves them out.
_SLOW_FIXTURES = frozenset({"celery_worker", "celery_workers"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser") or _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
