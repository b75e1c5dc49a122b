"""The shipped default models against the full-size PP-ShiTuV2 architectures, timed side by side.

Usage: .venv/bin/python bench/shipped_models.py [--runs 30] [--threads 2]

Loads the extractor and detector under ``models/`` through ``PaddleExtractor``/``PaddleDetector.from_dir``
(as the platform does) and exports randomly initialised full-size nets (PPLCNetV2_base_ShiTu at 224,
PicoDet LCNet x2.5 at 640: what the official archives run; latency does not depend on the weights).
All settings are loaded first and timed round-robin, so a noisy neighbour slows them alike.
Medians and p95 in milliseconds, batch 1, preprocessing included; ratios against the full-size nets.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paddle  # noqa: E402

from recognition.engine.inference import PaddleDetector, PaddleExtractor  # noqa: E402
from recognition.engine.export import export_inference_model  # noqa: E402
from recognition.engine.manifest import installed_models  # noqa: E402
from recognition.engine.nets import PicoDet, build_recognition_model  # noqa: E402


def shipped(kind: str) -> Path:
    manifests = installed_models(REPO / "models", kind)
    if not manifests:
        sys.exit(f"no shipped {kind} under {REPO / 'models'}")
    return REPO / "models" / kind / max(manifests, key=lambda m: m.created).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-shipped-"))
    try:
        paddle.seed(0)
        export_inference_model(build_recognition_model(), work / "rec", kind="extractor", input_size=224, name="full-rec")
        export_inference_model(PicoDet(scale=2.5), work / "det", kind="detector", input_size=(640, 640), name="full-det")
        rng = np.random.default_rng(0)
        crop = rng.integers(0, 256, (300, 220, 3), dtype=np.uint8)
        photo = rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8)
        models = {
            "extractor, shipped": (PaddleExtractor.from_dir(shipped("extractor"), threads=args.threads), "extract"),
            "extractor, full-size @224": (PaddleExtractor.from_dir(work / "rec", threads=args.threads), "extract"),
            "detector, shipped": (PaddleDetector.from_dir(shipped("detector"), threads=args.threads), "detect"),
            "detector, full-size x2.5 @640": (PaddleDetector.from_dir(work / "det", threads=args.threads), "detect"),
        }
        samples: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.runs):
            for name, (model, method) in models.items():
                started = time.perf_counter()
                getattr(model, method)([crop] if method == "extract" else photo)
                samples[name].append((time.perf_counter() - started) * 1000)
        sizes = {name: model.runner.files.program.stat().st_size + model.runner.files.params.stat().st_size
                 for name, (model, _) in models.items()}
        print(f"batch 1, {args.threads} threads, oneDNN, {args.runs} runs; crop 220x300, photo 1280x960")
        print(f"{'model':32} {'input':>9} {'median ms':>10} {'p95 ms':>8} {'files MB':>9} {'vs full-size':>13}")
        for name, (model, _) in models.items():
            full = next(n for n in models if n.split(",")[0] == name.split(",")[0] and "full" in n)
            median = statistics.median(samples[name])
            ratio = median / statistics.median(samples[full])
            size = "x".join(str(v) for v in model.input_size)
            print(f"{name:32} {size:>9} {median:10.1f} {np.percentile(samples[name], 95):8.1f} "
                  f"{sizes[name] / 1e6:9.1f} {ratio:12.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
