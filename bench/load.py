"""Bounded load test on loopback: sustained recognitions while galleries are imported, against the embedded stack.

Reports throughput, p50/p95/p99, errors by status (429s counted apart), and the worker's and web's resident
memory sampled over time (growth = last minus first sample). Stops by itself after --seconds.

    .venv/bin/python bench/load.py --seconds 180 --clients 8          # the full form
    .venv/bin/python bench/load.py --seconds 20 --clients 4 --json    # the short form CI runs
    .venv/bin/python bench/load.py --seconds 120 --malloc-arenas 0,2 --rounds 2   # glibc arenas compared

``--malloc-arenas`` runs one stack per value and round (``MALLOC_ARENA_MAX``; 0 is glibc's own default of 8 per
core, and the stack's web recycling is turned off so growth shows), the values taking turns, then prints them side
by side with their ratios to the first value (medians over the rounds).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recognition_api import create_tenant_key, free_port, generated_gallery, percentile  # noqa: E402

from shitu_platform.launcher import api_call as call  # noqa: E402
from shitu_platform.launcher import gallery_import_via_api, multipart_body  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def stack_processes(var_dir: str) -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {"worker": [], "web": []}
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.environ().get("SHITU_VAR_DIR") != var_dir:
                continue
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        line = " ".join(process.info["cmdline"] or [])
        if "celery" in line and " worker" in line:
            found["worker"].append(process)
        elif "gunicorn" in line:
            found["web"].append(process)
    return found


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--imports", type=int, default=3, help="gallery imports run concurrently with the load")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for tests)")
    parser.add_argument("--malloc-arenas", help="comma-separated MALLOC_ARENA_MAX values to compare (0: glibc's default)")
    parser.add_argument("--rounds", type=int, default=1, help="with --malloc-arenas: runs per value, taking turns")
    args = parser.parse_args()
    if args.malloc_arenas:
        compare_arenas(args, [value.strip() for value in args.malloc_arenas.split(",") if value.strip()])
        return
    report = one_run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)


def one_run(args) -> dict:
    """A fresh embedded stack under load for ``args.seconds``; the report of ``run_load``."""
    var_dir = tempfile.mkdtemp(prefix="shitu-load-")
    os.chmod(var_dir, 0o711)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(SHITU_VAR_DIR=var_dir, SHITU_EMBEDDED_PG_PORT=str(free_port()), SHITU_EMBEDDED_REDIS_PORT=str(free_port()),
               DJANGO_SETTINGS_MODULE="shitu_platform.settings")
    os.environ.update(env)
    stack = subprocess.Popen([sys.executable, "manage.py", "shitu", "up", "--port", str(port)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in stack.stdout:
            if "ShiTu Platform is up" in line:
                break
        threading.Thread(target=lambda: [None for _ in stack.stdout], daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        key = create_tenant_key()
        archive, queries = generated_gallery(20)
        gallery = gallery_import_via_api(base, key, "load", "g.zip", archive, sys.stderr)
        return run_load(base, key, gallery["id"], queries, args, var_dir)
    finally:
        stack.terminate()
        stack.wait(timeout=60)


def compare_arenas(args, values: list[str]) -> None:
    """The same load once per MALLOC_ARENA_MAX value and round, then a side-by-side table (medians over rounds)."""
    import statistics

    reports: dict[str, list[dict]] = {value: [] for value in values}
    for round_ in range(args.rounds):
        for value in values if round_ % 2 == 0 else values[::-1]:
            # A process per run: Django binds this process' database settings to the first stack it talks to.
            run = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--seconds", str(args.seconds), "--clients",
                 str(args.clients), "--imports", str(args.imports), "--json"],
                cwd=REPO, capture_output=True, text=True, check=True,
                env={**os.environ, "MALLOC_ARENA_MAX": value, "SHITU_WEB_MAX_REQUESTS": "0"})
            report = json.loads(run.stdout.strip().splitlines()[-1])
            reports[value].append(report)
            print(f"round {round_ + 1}, MALLOC_ARENA_MAX={value}:", file=sys.stderr)
            print_report(report, file=sys.stderr)
    rows = {
        "req/s": lambda r: r["rps"], "p50 ms": lambda r: r["p50_ms"], "p95 ms": lambda r: r["p95_ms"],
        "errors (not 429)": lambda r: r["errors_not_429"],
        "worker RSS at the end, MB": lambda r: r["worker_rss_mb"][-1],
        "worker RSS peak, MB": lambda r: max(r["worker_rss_mb"]),
        "web RSS at the end, MB": lambda r: r["web_rss_mb"][-1],
        "web RSS growth, MB": lambda r: r["web_rss_mb"][-1] - r["web_rss_mb"][0],
    }
    names = [f"ARENA_MAX={value}" + (" (glibc)" if value == "0" else "") for value in values]
    print(f"{args.seconds:.0f} s x {args.rounds} round(s), {args.clients} clients, web recycling off; median over rounds")
    print(f"{'':28}" + "".join(f"{name:>22}" for name in names))
    for label, read in rows.items():
        medians = [statistics.median(read(r) for r in reports[value]) for value in values]
        cells = [f"{medians[0]:10.1f}"] + [
            f"{m:10.1f} ({m / medians[0]:.2f}x)" if medians[0] else f"{m:10.1f}" for m in medians[1:]]
        print(f"{label:28}" + "".join(f"{cell:>22}" for cell in cells))


def run_load(base: str, key: str, gallery_id: int, queries: list[bytes], args, var_dir: str) -> dict:
    deadline = time.monotonic() + args.seconds
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    memory: list[tuple[float, float, float]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def client(number: int) -> None:
        rng = random.Random(number)
        while time.monotonic() < deadline:
            body, content_type = multipart_body("image", "q.jpg", rng.choice(queries), {"gallery": str(gallery_id)})
            t0 = time.perf_counter()
            status, _ = call(base, key, "POST", "/api/v1/recognitions/", body, content_type)
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)

    def importer() -> None:
        for number in range(args.imports):
            if time.monotonic() > deadline:
                return
            archive, _ = generated_gallery(6 + number)
            _, gallery = call(base, key, "POST", "/api/v1/galleries/", json.dumps({"name": f"import-{number}"}).encode())
            body, content_type = multipart_body("archive", "g.zip", archive)
            call(base, key, "POST", f"/api/v1/galleries/{gallery['id']}/imports/", body, content_type)
            time.sleep(args.seconds / max(1, args.imports + 1))

    def sampler() -> None:
        while time.monotonic() < deadline:
            processes = stack_processes(var_dir)
            memory.append((time.monotonic() - started, rss_mb(processes["worker"]), rss_mb(processes["web"])))
            time.sleep(max(1.0, args.seconds / 30))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    threads += [threading.Thread(target=importer), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    ok = statuses.get(200, 0)
    return {
        "seconds": round(wall, 1), "clients": args.clients, "requests": sum(statuses.values()), "ok": ok,
        "rps": round(ok / wall, 2), "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "status_counts": dict(statuses), "errors_not_429": sum(c for s, c in statuses.items() if s not in (200, 429)),
        "worker_rss_mb": [round(m[1], 1) for m in memory], "web_rss_mb": [round(m[2], 1) for m in memory],
        "worker_rss_growth_mb": round(memory[-1][1] - memory[len(memory) // 3][1], 1) if len(memory) > 2 else None,
    }


def print_report(report: dict, file=sys.stdout) -> None:
    print(f"{report['seconds']}s, {report['clients']} clients: {report['ok']}/{report['requests']} ok, "
          f"{report['rps']} req/s, p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, p99 {report['p99_ms']} ms", file=file)
    print(f"statuses: {report['status_counts']}  errors other than 429: {report['errors_not_429']}", file=file)
    print(f"worker RSS MB over time: {report['worker_rss_mb']}", file=file)
    print(f"web RSS MB over time:    {report['web_rss_mb']}", file=file)
    print(f"worker RSS growth after warm-up: {report['worker_rss_growth_mb']} MB", file=file)


if __name__ == "__main__":
    main()
