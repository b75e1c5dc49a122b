"""Benchmark the synchronous recognition API on the embedded stack: throughput and latency at 1, 4, 16 clients.

Starts `manage.py shitu up` (fresh var dir, free ports), creates a tenant + API key, imports a gallery
(generated product photos, or --gallery DIR with a PaddleClas labels.txt), then sends recognitions from
N concurrent clients on loopback. Prints requests/s, p50/p95/p99, errors, and the split of each
request's time between web (HTTP + validation + storage), queue wait and worker (decode, detect,
extract, search), side by side, with ratios against 1 client.

    .venv/bin/python bench/recognition_api.py --requests 60 --clients 1 4 16
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from shitu_platform.launcher import api_call as call  # noqa: E402
from shitu_platform.launcher import gallery_import_via_api, multipart_body  # noqa: E402


def free_port() -> int:
    from shitu_platform.embedded import free_port as pick

    return pick()


def generated_gallery(n_products: int) -> tuple[bytes, list[bytes]]:
    import sys as _sys

    _sys.path.insert(0, str(REPO))
    from tests.support.images import product_photo

    rng = random.Random(0)
    members, lines, queries = {}, [], []
    for product in range(n_products):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        for shot in range(3):
            data = product_photo(colour, size=(240 + 10 * shot, 320))
            members[f"{product}/{shot}.jpg"] = data
            lines.append(f"{product}/{shot}.jpg\tproduct {product}")
        queries.append(product_photo(tuple(min(255, c + 8) for c in colour), size=(640, 480)))
    members["labels.txt"] = "\n".join(lines).encode()
    return _zip(members), queries


def folder_gallery(folder: Path, n_queries: int) -> tuple[bytes, list[bytes]]:
    members = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    images = sorted(k for k in members if k != "labels.txt")
    return _zip(members), [members[k] for k in random.Random(0).sample(images, min(n_queries, len(images)))]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_clients(base: str, key: str, queries: list[bytes], clients: int, total: int) -> dict:
    latencies, splits, errors = [], [], []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            body, content_type = multipart_body("image", "q.jpg", queries[number % len(queries)])
            started = time.perf_counter()
            status, answer = call(base, key, "POST", "/api/v1/recognitions/", body, content_type)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if status != 200:
                    errors.append(status)
                    continue
                latencies.append(elapsed)
                worker = answer["timings_ms"].get("total_ms", 0.0)
                queue = answer["timings_ms"].get("queue_ms", 0.0)
                splits.append((elapsed - worker - queue, queue, worker))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients, "ok": len(latencies), "errors": len(errors), "rps": len(latencies) / wall,
        "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
        "web": statistics.median(s[0] for s in splits), "queue": statistics.median(s[1] for s in splits),
        "worker": statistics.median(s[2] for s in splits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="requests per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--products", type=int, default=30, help="generated gallery size (ignored with --gallery)")
    parser.add_argument("--gallery", type=Path, help="a folder with labels.txt, e.g. drink-dev")
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="shitu-bench-")
    os.chmod(var_dir, 0o711)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(SHITU_VAR_DIR=var_dir, SHITU_EMBEDDED_PG_PORT=str(free_port()), SHITU_EMBEDDED_REDIS_PORT=str(free_port()),
               DJANGO_SETTINGS_MODULE="shitu_platform.settings")
    os.environ.update(env)
    stack = subprocess.Popen([sys.executable, "manage.py", "shitu", "up", "--port", str(port), "--web-workers", str(args.web_workers)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in stack.stdout:
            if "ShiTu Platform is up" in line:
                break
        else:
            raise SystemExit("the stack did not start")
        threading.Thread(target=lambda: [None for _ in stack.stdout], daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        key = create_tenant_key()
        archive, queries = folder_gallery(args.gallery, 50) if args.gallery else generated_gallery(args.products)
        started = time.perf_counter()
        gallery = gallery_import_via_api(base, key, "bench", "g.zip", archive, sys.stderr)
        seconds = time.perf_counter() - started
        _, gallery = call(base, key, "GET", f"/api/v1/galleries/{gallery['id']}/")
        print(f"gallery: {gallery['image_count']} images imported in {seconds:.1f}s "
              f"({gallery['image_count'] / seconds:.1f} images/s, 1 worker process)")
        for warm in queries[:3]:
            call(base, key, "POST", "/api/v1/recognitions/", *multipart_body("image", "w.jpg", warm))
        rows = [run_clients(base, key, queries, clients, args.requests) for clients in args.clients]
        print_table(rows)
    finally:
        stack.terminate()
        stack.wait(timeout=60)


def create_tenant_key() -> str:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from shitu_platform.tenancy.models import Tenant
    from shitu_platform.tenancy.services import api_key_create, tenant_create

    owner = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}", password=uuid.uuid4().hex)
    tenant = tenant_create(name=f"Bench {owner.username}", owner=owner)
    Tenant.objects.filter(pk=tenant.pk).update(requests_per_minute=100_000, recognitions_per_minute=100_000)
    return api_key_create(tenant=tenant, name="bench", role="admin")[1]


def print_table(rows: list[dict]) -> None:
    base = rows[0]
    print(f"\n{'clients':>7} {'ok':>4} {'err':>4} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'web ms':>7} {'queue ms':>8} {'worker ms':>9} {'req/s vs 1':>10} {'p50 vs 1':>8}")
    for row in rows:
        print(f"{row['clients']:>7} {row['ok']:>4} {row['errors']:>4} {row['rps']:>7.2f} {row['p50']:>8.1f} {row['p95']:>8.1f} "
              f"{row['p99']:>8.1f} {row['web']:>7.1f} {row['queue']:>8.1f} {row['worker']:>9.1f} "
              f"{row['rps'] / base['rps']:>10.2f} {row['p50'] / base['p50']:>8.2f}")
    print("web = client latency - queue wait - worker time (HTTP, validation, storing the photo, the result round trip)")


if __name__ == "__main__":
    main()
