"""Bounded load test on loopback: sustained recognitions while galleries are imported, against the embedded stack.

Reports throughput, p50/p95/p99, errors by status (429s counted apart), and the worker's and web's resident
memory sampled over time (growth = last minus first sample). Stops by itself after --seconds.

    .venv/bin/python bench/load.py --seconds 180 --clients 8          # the full form
    .venv/bin/python bench/load.py --seconds 20 --clients 4 --json    # the short form CI runs
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
    args = parser.parse_args()

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
        report = run_load(base, key, gallery["id"], queries, args, var_dir)
    finally:
        stack.terminate()
        stack.wait(timeout=60)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)


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


def print_report(report: dict) -> None:
    print(f"{report['seconds']}s, {report['clients']} clients: {report['ok']}/{report['requests']} ok, "
          f"{report['rps']} req/s, p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, p99 {report['p99_ms']} ms")
    print(f"statuses: {report['status_counts']}  errors other than 429: {report['errors_not_429']}")
    print(f"worker RSS MB over time: {report['worker_rss_mb']}")
    print(f"web RSS MB over time:    {report['web_rss_mb']}")
    print(f"worker RSS growth after warm-up: {report['worker_rss_growth_mb']} MB")


if __name__ == "__main__":
    main()
