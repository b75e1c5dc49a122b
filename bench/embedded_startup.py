"""Start-up cost of the embedded stack: cold init, warm start, already-running start, stop.

Usage: .venv/bin/python bench/embedded_startup.py [--repeat 3]
Each repeat uses a fresh data dir under /tmp and free ports; the table shows the median and the max.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    services: dict[str, Callable[[Path], Service]] = {
        "postgres": lambda data_dir: EmbeddedPostgres(PostgresSettings(data_dir=data_dir, port=free_port())),
        "redis": lambda data_dir: EmbeddedRedis(RedisSettings(data_dir=data_dir, port=free_port())),
    }
    print(f"{'service':<10} {'phase':<16} {'median s':>9} {'max s':>7}   (n={args.repeat})")
    for name, make in services.items():
        for phase, values in measure(make, args.repeat).items():
            print(f"{name:<10} {phase:<16} {statistics.median(values):>9.3f} {max(values):>7.3f}")


if __name__ == "__main__":
    main()
