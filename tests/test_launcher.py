"""The launcher brings the whole embedded stack up, reuses its data on restart, keeps the terminal calm (children log to
var/log), posts the demo's sample recognitions once, and Ctrl-C stops it all, even when SIGINT arrives ignored."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from shitu_platform import launcher
from shitu_platform.embedded import EmbeddedPostgres, PostgresSettings, free_port
from shitu_platform.embedded.supervisor import port_is_free

REPO_ROOT = Path(__file__).resolve().parent.parent
BANNER_END = "Ctrl-C stops everything."


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
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # nothing went wrong, so nothing on stderr
    return result.stdout


def _recognitions_stored(env: dict[str, str]) -> int:
    server = EmbeddedPostgres(PostgresSettings(data_dir=Path(env["SHITU_VAR_DIR"]) / "postgres",
                                               port=int(env["SHITU_EMBEDDED_PG_PORT"])))
    with psycopg.connect(server.start()) as connection:
        connection.execute("SELECT set_config('shitu.scope', 'system', false)")  # row-level security: every tenant's rows
        return connection.execute("SELECT count(*) FROM recognition_recognition").fetchone()[0]


@pytest.mark.slow
def test_demo_reaches_logged_in_dashboard_and_restarts_on_existing_data(stack_env):
    first = _run_smoke(stack_env, free_port())
    assert "ShiTu Platform is up" in first
    right = re.search(r"sample photos: (\d+)/12 right", first)
    assert right is not None, first  # the demo gallery was imported by the worker and 12 sample photos recognised
    assert int(right.group(1)) >= 8, first
    var_dir = Path(stack_env["SHITU_VAR_DIR"])
    assert f"{var_dir}/log/{{web,worker,training-worker,beat,demo}}.log" in first, first  # the banner says where logs are
    assert (var_dir / "log" / "demo.log").read_text().count(" -> ") == 12  # one line per sample photo
    pg_version = var_dir / "postgres"
    marker = next(pg_version.rglob("PG_VERSION"))
    initialised_at = marker.stat().st_mtime

    second = _run_smoke(stack_env, free_port())
    password = re.compile(r"demo login: demo / (\S+)")
    assert password.search(first).group(1) == password.search(second).group(1), "the demo user did not survive a restart"
    assert marker.stat().st_mtime == initialised_at, "initdb ran again on existing data"
    assert "recognised on the first start" in second, second
    assert "workers and beat ready in" in second, second  # they start after the web; the smoke run waits for them
    for port in (stack_env["SHITU_EMBEDDED_PG_PORT"], stack_env["SHITU_EMBEDDED_REDIS_PORT"]):
        assert port_is_free("127.0.0.1", int(port)), f"port {port} still taken after the smoke run stopped"
    assert _recognitions_stored(stack_env) == 12, "the second start posted the sample photos again"

    worker_log = (var_dir / "log" / "worker.log").read_text()
    assert worker_log.count("recognition.run_recognition") >= 12 and "Warm shutdown" in worker_log  # Paddle ran here
    for name in ("worker", "training-worker", "beat"):
        log = (var_dir / "log" / f"{name}.log").read_text()
        assert "superuser privileges" not in log, f"{name}.log"
        assert "FatalError" not in log and "Termination signal" not in log, f"{name}.log: a clean stop looked like a crash"


def _ignore_and_block_sigint() -> None:
    """What a shell script does to a background job: SIGINT ignored (and here blocked too), kept across exec."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["default", "inherited ignored and blocked"])
def test_ctrl_c_stops_every_child_and_the_terminal_stays_calm(stack_env, sigint):
    web_port = free_port()
    launcher_process = subprocess.Popen(
        [sys.executable, "manage.py", "shitu", "up", "--port", str(web_port)],
        cwd=REPO_ROOT, env=stack_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_ignore_and_block_sigint if sigint != "default" else None,
    )
    output: list[str] = []
    deadline = time.monotonic() + 240
    try:
        for line in launcher_process.stdout:
            output.append(line)
            if BANNER_END in line or time.monotonic() > deadline:
                break
        assert any("ShiTu Platform is up" in line for line in output), "".join(output)[-3000:]
        # Nothing but the banner: the children's logs go to var/log, not to the terminal.
        assert all(line.startswith(("ShiTu Platform is up", "  ")) for line in output), "".join(output)[-3000:]
        children = psutil.Process(launcher_process.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "gunicorn" in names and names.count("celery") >= 3, names  # web (and its workers), two workers, beat
        web_log = Path(stack_env["SHITU_VAR_DIR"]) / "log" / "web.log"
        assert "Booting worker" in web_log.read_text()
        assert "Control socket" not in web_log.read_text()  # not one per-user socket shared by every stack
        threading.Thread(target=output.extend, args=(launcher_process.stdout,), daemon=True).start()
        time.sleep(2)
        launcher_process.send_signal(signal.SIGINT)
        try:
            launcher_process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher_process.send_signal(signal.SIGUSR1)  # the launcher dumps its threads' stacks: where the stop hangs
            time.sleep(2)
            pytest.fail("the launcher did not stop within 60 s of Ctrl-C; it printed:\n" + "".join(output)[-4000:])
    finally:
        if launcher_process.poll() is None:
            launcher_process.kill()
    assert launcher_process.returncode == 0, "".join(output)[-3000:]
    after_banner = "".join(output).split(BANNER_END, 1)[1]
    assert [line for line in after_banner.splitlines() if line.strip()] == [
        "stopping…", *re.findall(r"stopped: .*", after_banner)], after_banner
    psutil.wait_procs(children, timeout=10)
    assert all(_gone(child) for child in children), [child for child in children if not _gone(child)]
    for port in (web_port, int(stack_env["SHITU_EMBEDDED_PG_PORT"]), int(stack_env["SHITU_EMBEDDED_REDIS_PORT"])):
        assert port_is_free("127.0.0.1", port), f"port {port} still taken after Ctrl-C"


@pytest.mark.slow
def test_paddle_leaves_sigterm_to_python():
    """A worker builds its predictors, then the launcher stops it with SIGTERM: the process' own handler must run (a
    Celery pool process exits cleanly), not Paddle's, which prints a C++ "FatalError ... Aborted" report."""
    model_dir = next((REPO_ROOT / "models" / "extractor").glob("*/manifest.json")).parent
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('clean exit', flush=True), sys.exit(0)))\n"
        "from recognition.engine.inference import program_input_names\n"
        f"program_input_names({str(model_dir)!r})\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(10)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "FatalError" not in result.stderr and "Termination signal" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 0 and "clean exit" in result.stdout, (result.returncode, result.stderr[-2000:])


def test_workers_start_without_the_root_warning_but_keep_others(settings):
    """Celery's "running the worker with superuser privileges" warning (and Paddle's ccache one) are filtered for the
    launcher's workers only."""
    worker_env = launcher.child_specs(host="127.0.0.1", port=8000, web_workers=1, with_worker=True)["worker"].env
    code = (
        "import warnings\n"
        "from celery.exceptions import SecurityWarning\n"
        "from celery.platforms import ROOT_DISCOURAGED\n"
        "warnings.warn(SecurityWarning(ROOT_DISCOURAGED.format(uid=0, euid=0, gid=0, egid=0)))\n"
        "warnings.warn('No ccache found. Please be aware that recompiling all source files may be required.')\n"
        "warnings.warn('another warning stays visible')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**os.environ, **worker_env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "superuser" not in result.stderr and "ccache" not in result.stderr, result.stderr  # Paddle's, on import
    assert "another warning stays visible" in result.stderr, result.stderr
    assert "PYTHONWARNINGS" not in launcher.child_specs(host="127.0.0.1", port=8000, web_workers=1,
                                                       with_worker=True)["web"].env


# Eight threads that hold memory at the same time, then glibc's own count of its malloc arenas (heaps).
_ARENA_PROBE = """
import ctypes, os, re, threading
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    held = [bytearray(1 << 16) for _ in range(4)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
read, write = os.pipe()
stream = ctypes.c_void_p(libc.fdopen(write, b"w"))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(len(re.findall(rb"<heap nr=", os.read(read, 1 << 20))))
"""


def _malloc_arenas(env: dict[str, str]) -> int:
    result = subprocess.run([sys.executable, "-c", _ARENA_PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_children_share_two_malloc_arenas_unless_the_operator_chose(monkeypatch):
    """The web's request threads and the workers' model threads would each grow a glibc arena (README Figures:
    less worker RSS under load with two)."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    unset = dict(os.environ)
    specs = launcher.child_specs(host="127.0.0.1", port=8000, web_workers=1, with_worker=True)
    assert {name: spec.env["MALLOC_ARENA_MAX"] for name, spec in specs.items()} == dict.fromkeys(specs, "2")
    assert _malloc_arenas({**unset, **specs["web"].env}) == 2
    assert _malloc_arenas(unset) > 2  # without the cap the same threads get an arena each
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    specs = launcher.child_specs(host="127.0.0.1", port=8000, web_workers=1, with_worker=True)
    assert specs["worker"].env["MALLOC_ARENA_MAX"] == "4" and _malloc_arenas({**os.environ, **specs["worker"].env}) == 4


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_rewrites_one_status_line_on_a_terminal_and_prints_none_into_a_pipe():
    terminal, terminal_errors = _Terminal(), _Terminal()
    console = launcher.Console(terminal, terminal_errors)
    console.status("starting… postgres")
    console.status("starting… redis")
    console.line("ShiTu Platform is up")
    console.error("worker exited")
    assert terminal.getvalue() == "\r\x1b[2Kstarting… postgres\r\x1b[2Kstarting… redis\r\x1b[2KShiTu Platform is up\n"
    assert terminal_errors.getvalue() == "worker exited\n"

    pipe, pipe_errors = io.StringIO(), io.StringIO()
    console = launcher.Console(pipe, pipe_errors)
    console.status("starting… postgres")
    console.line("ShiTu Platform is up")
    console.error("worker exited")
    assert (pipe.getvalue(), pipe_errors.getvalue()) == ("ShiTu Platform is up\n", "worker exited\n")


def test_sample_recognitions_are_recorded_per_gallery(settings, tmp_path):
    from shitu_platform.demo import demo_samples_posted, demo_samples_record

    settings.VAR_DIR = tmp_path
    gallery = {"id": 1, "name": "Demo drinks", "created_at": "2026-12-07T02:00:00Z"}
    assert demo_samples_posted(gallery) is None
    demo_samples_record(gallery, summary="9/12 right, 3 no match, none wrong")
    assert demo_samples_posted(gallery)["summary"] == "9/12 right, 3 no match, none wrong"
    # A database started afresh may hand the same id to a new gallery: that one has not had its samples.
    assert demo_samples_posted({**gallery, "created_at": "2026-12-08T09:00:00Z"}) is None
    assert json.loads((tmp_path / "demo-samples.json").read_text())  # kept in var/, beside the demo credentials


def test_sample_summary_counts_right_no_match_and_wrong():
    rows = [("Cola", "Cola", 0.9, 10.0), ("Tea", launcher.NO_MATCH, 0.0, 10.0), ("Milk", "Cola", 0.6, 10.0)]
    assert launcher.SampleSummary.of(rows).describe() == "1/3 right, 1 no match, 1 wrong"
    assert launcher.SampleSummary.of(rows[:1]).describe() == "1/1 right, 0 no match, none wrong"


def test_ready_watch_waits_for_a_ready_line_written_after_this_start(tmp_path):
    """Logs are appended to across starts: an old "ready" line from the previous run must not count."""
    from shitu_platform.embedded import ProcessGroup

    (tmp_path / "worker.log").write_text("[2026-12-06 10:00:00: INFO/MainProcess] embedded@host ready.\n")
    spec = launcher.ChildSpec([sys.executable, "-c", "import time; time.sleep(1.5); "
                               "print('[2026-12-07 10:00:00: INFO/MainProcess] embedded@host ready.')"],
                              env={}, restart=False, ready_line=launcher.CELERY_WORKER_READY)
    with ProcessGroup(tmp_path) as group:
        watch = launcher.ReadyWatch()
        watch.start(group, "worker", spec)
        assert watch.waiting_for() == ["worker"]
        assert group.wait_any(timeout=0.3) is None  # nothing exited yet
        deadline = time.monotonic() + 30
        while watch.waiting_for() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watch.waiting_for() == []


def test_collectstatic_runs_again_only_when_its_sources_changed(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.STATIC_ROOT = tmp_path / "static"
    assert launcher.collect_static_if_changed() is True
    assert (tmp_path / "static" / "admin").is_dir()
    assert launcher.collect_static_if_changed() is False
    settings.STATIC_ROOT = tmp_path / "static-elsewhere"
    assert launcher.collect_static_if_changed() is True
