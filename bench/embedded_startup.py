"""Start-up cost of the embedded stack: the servers alone (cold init, warm start, already-running start, stop), then
the whole demo as a user starts it (`manage.py shitu demo --smoke`): first start on an empty data dir, then restarts.

Usage: .venv/bin/python bench/embedded_startup.py [--repeat 3] [--servers-only | --stack-only]
Each server repeat uses a fresh data dir under /tmp and free ports; the stack uses one fresh data dir for its first
start and all restarts. Tables show the median and the max. "to banner" is the wall time from launching the command
to the banner (Python and Django start-up included); "up in" is what the banner says (from the command's start);
"workers ready" is when the Celery workers and beat had logged that they are ready (they start after the web).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shitu_platform.embedded import (  # noqa: E402
    EmbeddedPostgres,
    EmbeddedRedis,
    PostgresSettings,
    RedisSettings,
    free_port,
)

PHASES = ("cold init", "warm start", "start (running)", "stop")


class Service(Protocol):
    def start(self) -> str: ...
    def stop(self) -> None: ...


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(make: Callable[[Path], Service], repeat: int) -> dict[str, list[float]]:
    """cold start on an empty dir, stop, warm start on the same dir, start again while running, stop."""
    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for _ in range(repeat):
        scratch = Path(tempfile.mkdtemp(prefix="shitu-bench-"))
        scratch.chmod(0o755)  # as root, PostgreSQL runs as another user that must enter it
        service = make(scratch / "data")
        try:
            samples["cold init"].append(timed(service.start))
            service.stop()
            samples["warm start"].append(timed(service.start))
            samples["start (running)"].append(timed(service.start))
            samples["stop"].append(timed(service.stop))
        finally:
            service.stop()
            shutil.rmtree(scratch, ignore_errors=True)
    return samples


def demo_start(env: dict[str, str]) -> dict[str, float]:
    """One `shitu demo --smoke`: seconds to the banner, the banner's own figure, each step, and the stop."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "manage.py", "shitu", "demo", "--smoke", "--port", str(free_port())],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output, figures = [], {}
    for line in process.stdout:
        output.append(line)
        if "ShiTu Platform is up" in line:
            figures["to banner"] = time.perf_counter() - started
            figures["up in"] = float(re.search(r"up in ([\d.]+)s", line).group(1))
        if "workers and beat ready in" in line:
            figures["workers ready"] = float(re.search(r"ready in ([\d.]+)s", line).group(1))
        prefix = "step " if "steps:" in line else "stop " if line.startswith("stopped:") else None
        for step, seconds in re.findall(r"([a-z][a-z ]*?) ([\d.]+)s", line) if prefix else []:
            figures[prefix + step.strip()] = float(seconds)
    if process.wait() != 0 or "to banner" not in figures:
        raise SystemExit("the demo did not start:\n" + "".join(output)[-3000:])
    return figures


def measure_stack(repeat: int) -> dict[str, dict[str, list[float]]]:
    var_dir = Path(tempfile.mkdtemp(prefix="shitu-bench-stack-"))
    var_dir.chmod(0o711)
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "SHITU_EXTRACTOR", "SHITU_DETECTOR"}}
    env.update(DJANGO_SETTINGS_MODULE="shitu_platform.settings", SHITU_VAR_DIR=str(var_dir),
               SHITU_EMBEDDED_PG_PORT=str(free_port()), SHITU_EMBEDDED_REDIS_PORT=str(free_port()))
    runs: dict[str, dict[str, list[float]]] = {"first start": {}, "restart": {}}
    try:
        for kind, figures in [("first start", demo_start(env))] + [("restart", demo_start(env)) for _ in range(repeat)]:
            for name, seconds in figures.items():
                runs[kind].setdefault(name, []).append(seconds)
    finally:
        subprocess.run([sys.executable, "manage.py", "shitu", "stop"], cwd=REPO, env=env, capture_output=True, timeout=60)
        shutil.rmtree(var_dir, ignore_errors=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--servers-only", action="store_true", help="PostgreSQL and Redis alone")
    only.add_argument("--stack-only", action="store_true", help="the whole demo: first start and restarts")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} on {os.cpu_count()} CPUs")
    if not args.stack_only:
        services: dict[str, Callable[[Path], Service]] = {
            "postgres": lambda data_dir: EmbeddedPostgres(PostgresSettings(data_dir=data_dir, port=free_port())),
            "redis": lambda data_dir: EmbeddedRedis(RedisSettings(data_dir=data_dir, port=free_port())),
        }
        print(f"{'service':<10} {'phase':<16} {'median s':>9} {'max s':>7}   (n={args.repeat})")
        for name, make in services.items():
            for phase, values in measure(make, args.repeat).items():
                print(f"{name:<10} {phase:<16} {statistics.median(values):>9.3f} {max(values):>7.3f}")
    if not args.servers_only:
        print(f"\n{'demo':<12} {'figure':<28} {'median s':>9} {'max s':>7}   (first start n=1, restarts n={args.repeat})")
        for kind, figures in measure_stack(args.repeat).items():
            for name, values in figures.items():
                print(f"{kind:<12} {name:<28} {statistics.median(values):>9.2f} {max(values):>7.2f}")
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
