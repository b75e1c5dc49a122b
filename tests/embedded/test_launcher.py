"""Real PostgreSQL / Redis / child processes, no mocks: the embedded stack must work as root (CI) and not.

Run: .venv/bin/python -m pytest tests/embedded -p no:django -q
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from shitu_platform.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    PermissionProblem,
    PortInUse,
    PostgresSettings,
    ProcessGroup,
    RedisSettings,
    find_redis_server,
    free_port,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A world-traversable dir under /tmp: pytest's tmp_path sits in a 0700 dir the `shitu_pg` user cannot enter."""
    base = Path(tempfile.mkdtemp(prefix="shitu-emb-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_postgres(scratch: Path) -> Iterator[Callable[..., EmbeddedPostgres]]:
    """Build EmbeddedPostgres on free ports; every one is stopped at teardown even if the test failed."""
    created: list[EmbeddedPostgres] = []

    def make(data_dir: Path | None = None, port: int | None = None) -> EmbeddedPostgres:
        settings = PostgresSettings(data_dir=data_dir or scratch / "pg", port=port or free_port())
        server = EmbeddedPostgres(settings)
        created.append(server)
        return server

    yield make
    for server in created:
        server.stop()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """Somebody else's server on a port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def _env_with_repo_on_path() -> dict[str, str]:
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
def test_postgres_keeps_data_across_restart_and_initdb_runs_once(
    make_postgres: Callable[..., EmbeddedPostgres],
) -> None:
    server = make_postgres()
    url = server.start()
    assert url == f"postgres://shitu:shitu@127.0.0.1:{server.settings.port}/shitu" == server.url
    initialized_at = (server.pgdata / "PG_VERSION").stat().st_mtime_ns
    initdb_log_at = (server.data_dir / "initdb.log").stat().st_mtime_ns
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO item VALUES (1, '[1,2,3]')")

    server.stop()
    assert not server.is_running()
    assert server.start() == url

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT embedding::text FROM item WHERE id = 1").fetchone()
        nearest = conn.execute("SELECT id FROM item ORDER BY embedding <-> '[1,2,2]' LIMIT 1").fetchone()
    assert row == ("[1,2,3]",)
    assert nearest == (1,)
    assert (server.pgdata / "PG_VERSION").stat().st_mtime_ns == initialized_at
    assert (server.data_dir / "initdb.log").stat().st_mtime_ns == initdb_log_at


@pytest.mark.slow
def test_postgres_start_is_idempotent_and_stop_works_from_another_process(
    make_postgres: Callable[..., EmbeddedPostgres],
) -> None:
    server = make_postgres()
    server.start()
    pid = _postmaster_pid(server)
    assert server.start() == server.url
    assert _postmaster_pid(server) == pid

    # the launcher starts in one process and `stop` may come from another one
    stop_elsewhere = (
        "import sys; from pathlib import Path; from shitu_platform.embedded import EmbeddedPostgres, PostgresSettings; "
        "EmbeddedPostgres(PostgresSettings(data_dir=Path(sys.argv[1]), port=int(sys.argv[2]))).stop()"
    )
    subprocess.run([sys.executable, "-c", stop_elsewhere, str(server.data_dir), str(server.settings.port)],
                   check=True, cwd=REPO_ROOT, env=_env_with_repo_on_path(), timeout=60)
    assert not server.is_running()
    server.stop()  # idempotent


@pytest.mark.slow
def test_app_role_can_create_databases_that_already_have_vector(
    make_postgres: Callable[..., EmbeddedPostgres],
) -> None:
    """Django's test runner creates test_<db> as the app role; `vector` needs a superuser: template1 has it."""
    server = make_postgres()
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE test_shitu")
    test_url = server.url.rsplit("/", 1)[0] + "/test_shitu"
    with psycopg.connect(test_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # what a migration runs: a no-op, not an error
        assert conn.execute("SELECT '[1,2,3]'::vector(3)::text").fetchone() == ("[1,2,3]",)


@pytest.mark.slow
def test_postgres_recovers_after_kill_9(make_postgres: Callable[..., EmbeddedPostgres]) -> None:
    server = make_postgres()
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (id int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    os.kill(_postmaster_pid(server), signal.SIGKILL)
    assert (server.pgdata / "postmaster.pid").exists()  # stale now

    server.start()

    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT id FROM survivor").fetchone() == (42,)


def test_postgres_port_in_use_fails_fast_with_clear_error(
    make_postgres: Callable[..., EmbeddedPostgres], listening_socket: socket.socket
) -> None:
    port = listening_socket.getsockname()[1]
    server = make_postgres(port=port)
    started = time.monotonic()
    with pytest.raises(PortInUse) as error:
        server.start()
    assert time.monotonic() - started < 10
    assert error.value.code == "port_in_use"
    assert str(port) in str(error.value) and "PostgreSQL" in str(error.value)


@pytest.mark.slow
def test_postgres_long_data_dir_puts_socket_under_tmp(
    make_postgres: Callable[..., EmbeddedPostgres], scratch: Path
) -> None:
    deep = scratch
    for part in ("a" * 30, "b" * 30, "c" * 30):
        deep = deep / part
        deep.mkdir(mode=0o755)
    server = make_postgres(data_dir=deep / "pg")
    server.start()
    socket_dir = Path((server.pgdata / "postmaster.pid").read_text().splitlines()[4])
    try:
        assert socket_dir.parent == Path("/tmp") and socket_dir.name.startswith("shitu-pg-")
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another OS user")
def test_root_refuses_data_dir_the_postgres_user_cannot_reach(make_postgres: Callable[..., EmbeddedPostgres]) -> None:
    private = Path(tempfile.mkdtemp(prefix="shitu-private-"))  # 0700, owned by root
    try:
        with pytest.raises(PermissionProblem, match="chmod o\\+x"):
            make_postgres(data_dir=private / "pg").start()
    finally:
        shutil.rmtree(private, ignore_errors=True)


# ----------------------------------------------------------------------------- Redis


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert os.access(path, os.X_OK)


def test_redis_start_ping_stop(scratch: Path) -> None:
    server = EmbeddedRedis(RedisSettings(data_dir=scratch / "redis", port=free_port()))
    try:
        url = server.start()
        assert url == f"redis://127.0.0.1:{server.settings.port}/0"
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        pid = int((server.data_dir / "redis.pid").read_text())
        assert server.start() == url and int((server.data_dir / "redis.pid").read_text()) == pid
    finally:
        server.stop()
    assert not server.is_running()
    server.stop()  # idempotent
    assert server.start() == url  # restart after stop
    os.kill(int((server.data_dir / "redis.pid").read_text()), signal.SIGKILL)
    assert server.start() == url  # and after a crash (stale pid file)
    server.stop()
    assert not server.is_running()


def test_redis_port_in_use_fails_fast_with_clear_error(scratch: Path, listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    server = EmbeddedRedis(RedisSettings(data_dir=scratch / "redis", port=port))
    with pytest.raises(PortInUse, match=f"Redis: port {port}"):
        server.start(timeout=5)
    assert not server.is_running()


# ----------------------------------------------------------------------------- ProcessGroup


def test_process_group_logs_output_and_stops_children_even_stubborn_ones(scratch: Path) -> None:
    polite = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                "time.sleep(60)"]
    group = ProcessGroup(scratch / "log")
    group.start("worker", polite, env={"SHITU_ROLE": "worker"})
    group.start("web", stubborn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        (scratch / "log" / f"{name}.log").exists() and "ready" in (scratch / "log" / f"{name}.log").read_text()
        for name in ("worker", "web")
    ):
        time.sleep(0.05)
    assert group.returncodes() == {"worker": None, "web": None}

    started = time.monotonic()
    codes = group.stop(timeout=1.0)

    assert time.monotonic() - started < 5
    assert codes == {"worker": -signal.SIGTERM, "web": -signal.SIGKILL}


def test_process_group_wait_any_reports_the_child_that_exited(scratch: Path) -> None:
    console = io.StringIO()
    with ProcessGroup(scratch / "log", stream=True, stream_to=console) as group:
        group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        group.start("crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
        assert group.wait_any(poll_interval=0.05) == ("crasher", 3)
    assert "boom" in (scratch / "log" / "crasher.log").read_text()
    assert "crasher | boom" in console.getvalue()


@pytest.mark.slow
def test_children_stop_when_the_launcher_is_killed(scratch: Path) -> None:
    """A SIGKILLed launcher cannot stop its children itself: they must not outlive it (no orphaned web or worker)."""
    pid_file = scratch / "child.pid"
    launcher_code = (
        "import sys, time; from pathlib import Path; from shitu_platform.embedded import ProcessGroup; "
        f"group = ProcessGroup(Path({str(scratch / 'log')!r})); "
        f"child = group.start('web', [sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(120)"
    )
    launcher = subprocess.Popen([sys.executable, "-c", launcher_code], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its SIGKILLed launcher"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))  # a zombie is gone
