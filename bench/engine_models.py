"""Paddle Inference latency of the extractor and detector: oneDNN, threads, warm-up, batching.

Usage: .venv/bin/python bench/engine_models.py [--runs 30] [--det-runs 12] [--det-scale 2.5]

Exports randomly initialised full-size nets (PPLCNetV2_base_ShiTu at 224, PicoDet LCNet
x2.5 at 640; latency does not depend on the weights) and loads them through
``PaddleExtractor``/``PaddleDetector.from_dir`` exactly as an installed model is loaded.
All figures in one run, side by side; medians and p95 in milliseconds.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paddle  # noqa: E402

from recognition.engine.inference import PaddleDetector, PaddleExtractor  # noqa: E402
from recognition.engine.export import export_inference_model  # noqa: E402
from recognition.engine.nets import PicoDet, build_recognition_model  # noqa: E402


def timings(action: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def med(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def once(action: Callable[[], object]) -> float:
    return timings(action, 1)[0]


def crops_for(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, 256, (int(rng.integers(150, 400)), int(rng.integers(150, 400)), 3),
                        dtype=np.uint8) for _ in range(count)]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per extractor setting")
    parser.add_argument("--det-runs", type=int, default=12, help="timed runs per detector setting")
    parser.add_argument("--det-scale", type=float, default=2.5)
    parser.add_argument("--det-size", type=int, default=640)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    paddle.seed(0)
    rec_dir, det_dir = work / "rec", work / "det"
    export_inference_model(build_recognition_model(), rec_dir, kind="extractor", input_size=224,
                           name="bench-rec")
    export_inference_model(PicoDet(scale=args.det_scale), det_dir, kind="detector",
                           input_size=(args.det_size, args.det_size), name="bench-det")
    crop = crops_for(1, rng)
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rec_batch = np.zeros((1, 3, 224, 224), dtype=np.float32)

    print(f"PPLCNetV2_base_ShiTu @224 and PicoDet LCNet x{args.det_scale} @{args.det_size}, "
          "batch 1, random weights")
    print(f"{'model':10} {'oneDNN':6} {'thr':>3} {'create':>8} {'1st call':>9} "
          f"{'median':>8} {'p95':>8} {'e2e med':>8}   (ms; e2e = with preprocessing)")
    # Every setting is loaded first and then timed round-robin, one run each per round, so a
    # noisy neighbour on a shared machine slows all settings alike instead of one of them.
    settings = [(label, use_mkldnn, threads) for label in ("extractor", "detector")
                for use_mkldnn in (True, False) for threads in (1, 2)]
    loaded: dict[tuple[str, bool, int], dict] = {}
    for label, use_mkldnn, threads in settings:
        started = time.perf_counter()
        if label == "extractor":
            model = PaddleExtractor.from_dir(rec_dir, threads=threads, use_mkldnn=use_mkldnn,
                                             warmup=False)
            core_call = (lambda m: lambda: m.features(rec_batch))(model)
            e2e_call = (lambda m: lambda: m.extract(crop))(model)
        else:
            model = PaddleDetector.from_dir(det_dir, threads=threads, use_mkldnn=use_mkldnn,
                                            warmup=False)
            feeds = model.preprocess(photo).as_feed()
            core_call = (lambda m, f: lambda: m.runner.run(f))(model, feeds)
            e2e_call = (lambda m: lambda: m.detect(photo))(model)
        create_ms = (time.perf_counter() - started) * 1000
        loaded[(label, use_mkldnn, threads)] = {
            "create": create_ms, "first": once(core_call), "core_call": core_call,
            "e2e_call": e2e_call, "core": [], "e2e": []}
    for round_index in range(max(args.runs, args.det_runs)):
        for key, entry in loaded.items():
            runs = args.runs if key[0] == "extractor" else args.det_runs
            if round_index < runs:
                entry["core"] += timings(entry["core_call"], 1)
                if round_index % 3 == 0:
                    entry["e2e"] += timings(entry["e2e_call"], 1)
    results: dict[tuple[str, bool, int], float] = {}
    for (label, use_mkldnn, threads), entry in loaded.items():
        core, e2e = entry["core"], entry["e2e"]
        results[(label, use_mkldnn, threads)] = med(core)
        print(f"{label:10} {'on' if use_mkldnn else 'off':6} {threads:3d} {entry['create']:8.0f} "
              f"{entry['first']:9.1f} {med(core):8.1f} {p95(core):8.1f} {med(e2e):8.1f}")
    del loaded

    print("\nratios (median model time)")
    for label in ("extractor", "detector"):
        off_on = results[(label, False, 2)] / results[(label, True, 2)]
        one_two = results[(label, True, 1)] / results[(label, True, 2)]
        print(f"  {label:10} oneDNN off / on (2 thr): {off_on:5.2f}x   "
              f"1 thread / 2 threads (oneDNN): {one_two:5.2f}x")

    print("\nfirst call after load (oneDNN, 2 threads)")
    for label in ("extractor", "detector"):
        for warm in (False, True):
            if label == "extractor":
                started = time.perf_counter()
                model = PaddleExtractor.from_dir(rec_dir, warmup=warm)
                load_ms = (time.perf_counter() - started) * 1000
                first = once(lambda: model.extract(crop))
                steady = med(timings(lambda: model.extract(crop), 10))
            else:
                started = time.perf_counter()
                model = PaddleDetector.from_dir(det_dir, warmup=warm)
                load_ms = (time.perf_counter() - started) * 1000
                first = once(lambda: model.detect(photo))
                steady = med(timings(lambda: model.detect(photo), 4))
            print(f"  {label:10} warm-up {'on ' if warm else 'off'}: from_dir {load_ms:7.0f} ms, "
                  f"first request {first:7.1f} ms, steady {steady:7.1f} ms "
                  f"({first / steady:4.1f}x)")

    print("\nextracting N crops (oneDNN, 2 threads, batch_size 16; ms incl. preprocessing)")
    extractor = PaddleExtractor.from_dir(rec_dir)
    print(f"  {'N':>2} {'cold batch':>11} {'batched':>9} {'one by one':>11} {'ratio':>6} "
          f"{'per crop':>9}")
    for count in (1, 4, 8):
        crops = crops_for(count, rng)
        cold = once(lambda: extractor.extract(crops))  # first call at this batch shape
        batched = med(timings(lambda: extractor.extract(crops), 7))
        single = med(timings(lambda: [extractor.extract([c]) for c in crops], 5))
        print(f"  {count:2d} {cold:11.1f} {batched:9.1f} {single:11.1f} {single / batched:5.2f}x "
              f"{batched / count:9.1f}")
    print("\n  cold batch = the first call with a new batch size: oneDNN builds its primitives "
          "per input shape.")


if __name__ == "__main__":
    main()
