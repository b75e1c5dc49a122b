"""The per-tenant fine-tuning case, end to end on the embedded stack, timed.

A tenant imports half of a labelled folder's products (default: ../shared/data/drink-dev/gallery), starts a
fine-tuning job through the API, and the script prints progress, wall time, the held-out before/after
table, then promotes (only if better on the held-out split)
while recognition requests keep coming, and checks that every one of those requests succeeded and that each used exactly one model.

    .venv/bin/python bench/finetune_tenant.py --epochs 8
"""
from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from recognition_api import create_tenant_key, free_port  # noqa: E402

from shitu_platform.launcher import api_call as call  # noqa: E402
from shitu_platform.launcher import gallery_import_via_api, multipart_body  # noqa: E402

DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "drink-dev" / "gallery"


def half_of_products(folder: Path, seed: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    lines = [line.split("\t", 1) for line in (folder / "labels.txt").read_text(encoding="utf-8").splitlines() if "\t" in line]
    labels = sorted({label for _, label in lines})
    chosen = set(random.Random(seed).sample(labels, len(labels) // 2))
    picked = [(path, label) for path, label in lines if label in chosen]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, _ in picked:
            archive.write(folder / path, path)
        archive.writestr("labels.txt", "\n".join(f"{p}\t{label}" for p, label in picked))
    queries = [(label, (folder / path).read_bytes()) for path, label in random.Random(seed).sample(picked, min(20, len(picked)))]
    return buffer.getvalue(), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="shitu-finetune-")
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
        archive, queries = half_of_products(args.folder, args.seed)
        gallery = gallery_import_via_api(base, key, "half", "half.zip", archive, sys.stderr)
        started = time.perf_counter()
        status, job = call(base, key, "POST", "/api/v1/fine-tune-jobs/", f'{{"gallery": {gallery["id"]}, "epochs": {args.epochs}}}'.encode())
        if status != 202:
            raise SystemExit(f"fine-tune refused: {job}")
        while job["state"] not in ("ready", "failed", "cancelled"):
            time.sleep(5)
            _, job = call(base, key, "GET", f"/api/v1/fine-tune-jobs/{job['id']}/")
            print(f"  {time.perf_counter() - started:7.0f}s {job['state']:11} {job['progress'] * 100:5.1f}% "
                  f"step {job['current_step']}/{job['total_steps']}", file=sys.stderr)
        train_seconds = time.perf_counter() - started
        print(f"\nfine-tune: {job['state']} in {train_seconds:.0f}s ({args.epochs} epochs)")
        if job["state"] != "ready":
            print(job["failure_reason"], job["log"][-2000:])
            return
        print(f"{'held-out':10} {'recall@1':>9} {'recall@5':>9} {'mAP':>7}")
        for name, metrics in (("before", job["metrics_before"]), ("after", job["metrics_after"])):
            print(f"{name:10} {metrics['recall@1']:>9.3f} {metrics['recall@5']:>9.3f} {metrics['mAP']:>7.3f}")
        promote_under_load(base, key, job, queries)
    finally:
        stack.terminate()
        stack.wait(timeout=60)


def promote_under_load(base: str, key: str, job: dict, queries: list[tuple[str, bytes]]) -> None:
    """Recognitions keep coming while the promotion re-embeds and switches: all must succeed, each with one model."""
    outcomes: Counter[int] = Counter()
    models: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        number = 0
        while not stop.is_set():
            label, data = queries[number % len(queries)]
            number += 1
            status, answer = call(base, key, "POST", "/api/v1/recognitions/", *multipart_body("image", "q.jpg", data))
            outcomes[status] += 1
            if status == 200:
                models[answer["model_key"]] += 1

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    status, answer = call(base, key, "POST", f"/api/v1/fine-tune-jobs/{job['id']}/promote/", b"{}")
    if status != 202:
        print(f"promotion refused: {answer}")
    else:
        while answer["state"] == "reembedding":
            time.sleep(1)
            _, answer = call(base, key, "GET", f"/api/v1/fine-tune-jobs/{job['id']}/")
        print(f"promotion: {answer['state']} in {time.perf_counter() - started:.1f}s")
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join()
    print(f"recognitions during promotion: {dict(outcomes)}; answered by model: {dict(models)}")


if __name__ == "__main__":
    main()
