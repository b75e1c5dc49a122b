"""Per-crop extraction time of exported extractor folders, timed side by side at batch 5.

Usage: .venv/bin/python bench/extractor_speed.py [--rounds 40] [--threads 2] [--warmup 5]
       [--models models/extractor/A models/extractor/B ...]

Each folder is loaded through ``PaddleExtractor.from_dir(dir, threads=..., batch_size=5)`` as the
platform loads an installed model. Crops are real gallery photos
(``/work/shared/data/drink-dev/gallery/*/*.jpg``, decoded by ``load_image_file``, varied sizes), so
the total time includes preprocessing (resize + normalise); the network-only time feeds the
already-preprocessed batch to ``extractor.features``. After a warm-up the models are timed
interleaved round by round (A, B, A, B ...) on the same 5 crops, so machine noise hits them alike.
Figures are milliseconds per crop (call time / 5); ratios are against the LAST model given (by
default the previous default extractor), so "new/old" reads < 1 when the first is faster.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recognition.engine.imageio import load_image_file  # noqa: E402
from recognition.engine.inference import PaddleExtractor  # noqa: E402
from recognition.engine.model_files import find_model_files  # noqa: E402

DEFAULT_MODELS = ["models/extractor/shitu-rec-lite0-dd53",                 # new default, 224 px
                  "models/extractor/shitu-rec-synth-lcnetv2-x050-d1131"]   # previous default, 112 px
GALLERY = Path("/work/shared/data/drink-dev/gallery")
BATCH = 5


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def timed_ms(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def resolve(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() or path.exists() else REPO / path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="extractor folders; ratios are against the last one")
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds (one batch per model)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gallery", type=Path, default=GALLERY)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give at least two --models to compare")

    paths = sorted(args.gallery.glob("*/*.jpg"))
    if len(paths) < BATCH:
        sys.exit(f"need at least {BATCH} photos under {args.gallery}/*/*.jpg, found {len(paths)}")
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(paths), size=min(len(paths), BATCH * (args.rounds + args.warmup)),
                        replace=False)
    crops = [load_image_file(paths[i]) for i in picked]
    sides = np.array([crop.shape[:2] for crop in crops])

    models = []
    for name in args.models:
        directory = resolve(name)
        started = time.perf_counter()
        extractor = PaddleExtractor.from_dir(directory, threads=args.threads, batch_size=BATCH)
        load_ms = (time.perf_counter() - started) * 1000
        params = find_model_files(directory).params
        models.append({"name": directory.name, "extractor": extractor, "load": load_ms,
                       "params_mb": params.stat().st_size / 1e6, "total": [], "net": []})

    def batch_for(round_index: int) -> list[np.ndarray]:
        start = (round_index * BATCH) % (len(crops) - BATCH + 1)
        return crops[start:start + BATCH]

    for round_index in range(args.warmup + args.rounds):
        batch = batch_for(round_index)
        for model in models:   # A, B, A, B ...: the same crops for every model in a round
            extractor = model["extractor"]
            total = timed_ms(lambda: extractor.extract(batch))
            pre = extractor.preprocess(batch)
            net = timed_ms(lambda: extractor.features(pre))
            if round_index >= args.warmup:
                model["total"].append(total / BATCH)
                model["net"].append(net / BATCH)

    print(f"{len(crops)} gallery photos ({sides[:, 1].min()}-{sides[:, 1].max()} x "
          f"{sides[:, 0].min()}-{sides[:, 0].max()} px), batch {BATCH}, {args.threads} threads, "
          f"{args.warmup} warm-up + {args.rounds} timed rounds, interleaved")
    print("ms per crop; total = extract() incl. resize+normalise; net = features() only; "
          f"ratio = p50 / p50 of {models[-1]['name']}")
    header = (f"{'model':40} {'input':>7} {'params':>8} {'load':>6} "
              f"{'tot p50':>8} {'tot p95':>8} {'net p50':>8} {'net p95':>8} "
              f"{'tot ratio':>9} {'net ratio':>9}")
    print(header)
    print("-" * len(header))
    ref_total, ref_net = p50(models[-1]["total"]), p50(models[-1]["net"])
    for model in models:
        height, width = model["extractor"].input_size
        total, net = model["total"], model["net"]
        print(f"{model['name']:40} {f'{width}x{height}':>7} {model['params_mb']:6.1f}MB "
              f"{model['load']:4.0f}ms "
              f"{p50(total):8.2f} {p95(total):8.2f} {p50(net):8.2f} {p95(net):8.2f} "
              f"{p50(total) / ref_total:8.2f}x {p50(net) / ref_net:8.2f}x")


if __name__ == "__main__":
    main()
