"""Process and port helpers shared by the embedded services, plus `ProcessGroup` for the launcher.

Pure Python on purpose: the launcher uses this before Django settings exist.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class EmbeddedServiceError(RuntimeError):
    """Base error of the embedded stack; `code` is machine-readable, the message says what to do."""

    code = "embedded_service_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PortInUse(EmbeddedServiceError):
    code = "port_in_use"


class ServiceStartFailed(EmbeddedServiceError):
    code = "service_start_failed"


class ServiceNotFound(EmbeddedServiceError):
    code = "service_not_found"


class PermissionProblem(EmbeddedServiceError):
    code = "permission_problem"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when we could listen on host:port; SO_REUSEADDR like the servers do, so TIME_WAIT does not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure_port_free(host: str, port: int, *, service: str) -> None:
    """Fail fast with a readable message instead of letting the server die (or worse, wait) on bind."""
    if not port_is_free(host, port):
        raise PortInUse(
            f"{service}: port {port} on {host} is already in use by another process. "
            f"Stop that process or configure another port for {service}."
        )


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 15) -> str:
    """Last lines of a log file, for error messages (empty when there is no log yet)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and has not finished exiting.

    A zombie counts as dead (in containers pid 1 may reap it seconds later), but only once all its
    threads are gone: a zombie leader with live threads (Redis' bio threads) still holds its sockets.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[-1].split()[0]
        if state not in ("Z", "X"):
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (OSError, IndexError):
        return not os.path.isdir("/proc") or os.path.exists(f"/proc/{pid}")  # no procfs: trust kill(0)


# --------------------------------------------------------------------------------------------
# ProcessGroup: the launcher's children (celery worker, web server)
# --------------------------------------------------------------------------------------------


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    pump: threading.Thread | None = field(default=None)


class ProcessGroup:
    """Named child processes with their output in `log_dir/<name>.log`, stopped together on Ctrl-C.

    Each child runs in its own session (process group) so a terminal Ctrl-C reaches only the launcher,
    which then stops children in order: SIGTERM to the whole group, wait, SIGKILL what is left.
    That also reaches grandchildren (celery prefork pool, gunicorn workers).
    """

    def __init__(self, log_dir: Path, *, stream: bool = False, stream_to: IO[str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.stream = stream
        self._stream_to = stream_to
        self._children: dict[str, _Child] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` as child `name`; `env` is added to (overrides) this process' environment."""
        if name in self._children and self._children[name].process.poll() is None:
            raise EmbeddedServiceError(f"child process {name!r} is already running", code="child_running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.stream else log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )
        child = _Child(name=name, process=process, log_path=log_path)
        if self.stream:
            child.pump = threading.Thread(target=self._pump, args=(child,), name=f"log-{name}", daemon=True)
            child.pump.start()
        self._children[name] = child
        return process

    def _pump(self, child: _Child) -> None:
        """Copy a child's output to its log file and, prefixed with its name, to the console."""
        out = self._stream_to or sys.stdout
        assert child.process.stdout is not None
        with open(child.log_path, "ab") as log_file:
            for raw_line in iter(child.process.stdout.readline, b""):
                log_file.write(raw_line)
                log_file.flush()
                out.write(f"{child.name:>8} | {raw_line.decode(errors='replace')}")
                out.flush()

    @property
    def names(self) -> list[str]:
        return list(self._children)

    def returncodes(self) -> dict[str, int | None]:
        """Exit status per child; None while it runs."""
        return {name: child.process.poll() for name, child in self._children.items()}

    def wait_any(self, *, poll_interval: float = 0.2, timeout: float | None = None) -> tuple[str, int] | None:
        """Block until some child exits (the launcher then stops the rest); returns its name and exit code, or None
        when `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for name, code in self.returncodes().items():
                if code is not None:
                    return name, code
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(poll_interval)

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every child's process group, wait up to `timeout` in total, then SIGKILL the rest."""
        children = list(self._children.values())
        for child in reversed(children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            _signal_group(child.process, signal.SIGKILL)  # grandchildren that outlived their parent
            if child.pump is not None:
                child.pump.join(timeout=1.0)
        return self.returncodes()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the launcher dies, even by SIGKILL (Linux; elsewhere a no-op).

    Each child leads its own session, so a terminal's Ctrl-C does not reach it; without this a killed
    launcher would leave its web server and workers running, holding ports and polling a dead broker.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the child's process group (it leads one, see start_new_session); ignore the already gone."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
