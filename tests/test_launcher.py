"""The launcher brings the whole embedded stack up, reuses its data on restart, and Ctrl-C stops it all."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from shitu_platform.embedded import free_port
from shitu_platform.embedded.supervisor import port_is_free

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture()
def stack_env():
    var_dir = tempfile.mkdtemp(prefix="shitu-launcher-")
    os.chmod(var_dir, 0o711)
    # The demo runs as a user runs it: the shipped default models, not the test suite's pinned baseline.
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SHITU_EXTRACTOR", "SHITU_DETECTOR"}}
    env.update(
        SHITU_VAR_DIR=var_dir,
        SHITU_EMBEDDED_PG_PORT=str(free_port()),
        SHITU_EMBEDDED_REDIS_PORT=str(free_port()),
        DJANGO_SETTINGS_MODULE="shitu_platform.settings",
    )
    yield env
    subprocess.run([sys.executable, "manage.py", "shitu", "stop"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=60)


def _run_smoke(env: dict[str, str], web_port: int) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shitu", "demo", "--smoke", "--port", str(web_port)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_reaches_logged_in_dashboard_and_restarts_on_existing_data(stack_env):
    first = _run_smoke(stack_env, free_port())
    assert "ShiTu Platform is up" in first
    right = re.search(r"(\d+)/12 right", first)
    assert right is not None, first  # the demo gallery was imported by the worker and 12 sample photos recognised
    assert int(right.group(1)) >= 8, first
    pg_version = Path(stack_env["SHITU_VAR_DIR"]) / "postgres"
    marker = next(pg_version.rglob("PG_VERSION"))
    initialised_at = marker.stat().st_mtime

    second = _run_smoke(stack_env, free_port())
    password = re.compile(r"demo login: demo / (\S+)")
    assert password.search(first).group(1) == password.search(second).group(1), "the demo user did not survive a restart"
    assert marker.stat().st_mtime == initialised_at, "initdb ran again on existing data"
    for port in (stack_env["SHITU_EMBEDDED_PG_PORT"], stack_env["SHITU_EMBEDDED_REDIS_PORT"]):
        assert port_is_free("127.0.0.1", int(port)), f"port {port} still taken after the smoke run stopped"


def test_ctrl_c_stops_every_child(stack_env):
    web_port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "manage.py", "shitu", "up", "--port", str(web_port)],
        cwd=REPO_ROOT, env=stack_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + 180
    try:
        for line in launcher.stdout:
            output.append(line)
            if "ShiTu Platform is up" in line or time.monotonic() > deadline:
                break
        assert any("ShiTu Platform is up" in line for line in output), "".join(output)[-3000:]
        # Keep reading: the launcher streams its children's logs, and a full pipe would block it (not Ctrl-C).
        threading.Thread(target=output.extend, args=(launcher.stdout,), daemon=True).start()
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.send_signal(signal.SIGUSR1)  # the launcher dumps its threads' stacks: where the stop hangs
            time.sleep(2)
            pytest.fail("the launcher did not stop within 60 s of Ctrl-C; it printed:\n" + "".join(output)[-4000:])
    finally:
        if launcher.poll() is None:
            launcher.kill()
    for port in (web_port, int(stack_env["SHITU_EMBEDDED_PG_PORT"]), int(stack_env["SHITU_EMBEDDED_REDIS_PORT"])):
        assert port_is_free("127.0.0.1", port), f"port {port} still taken after Ctrl-C"
