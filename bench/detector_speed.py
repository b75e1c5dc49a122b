"""Detector time per photo, exported detector folders timed side by side on the same real photos.

Usage: .venv/bin/python bench/detector_speed.py [--photos 60] [--threads 2] [--warmup 5]
       [--models models/detector/A models/detector/B ...]

Each folder is loaded through ``PaddleDetector.from_dir(dir, threads=...)``, as the platform loads an
installed detector, and ``detect`` is timed from the decoded photo to the boxes (resize, normalise, network,
NMS). Photos are drink-dev's real photos (``/work/shared/data/drink-dev/gallery/*/*.jpg``, varied sizes),
and the models run interleaved photo by photo (A, B, A, B ...) so machine noise hits them alike. Ratios are
against the LAST model given (by default the previous detector): "new/old" reads 1.6 when the first takes
1.6 times as long.
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
from recognition.engine.inference import PaddleDetector  # noqa: E402

DEFAULT_MODELS = ["models/detector/shitu-det-lite0",                       # ImageNet Lite0 backbone, 320 px
                  "models/detector/shitu-det-synth-picodet-lcnet-x075"]    # previous default, 320 px
GALLERY = Path("/work/shared/data/drink-dev/gallery")


def resolve(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() or path.exists() else REPO / path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="detector folders; ratios against the last")
    parser.add_argument("--photos", type=int, default=60, help="timed photos (each through every model)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed photos first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gallery", type=Path, default=GALLERY)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give at least two --models to compare")
    paths = sorted(args.gallery.glob("*/*.jpg"))
    wanted = args.photos + args.warmup
    if len(paths) < wanted:
        sys.exit(f"need {wanted} photos under {args.gallery}/*/*.jpg, found {len(paths)}")
    picked = np.random.default_rng(args.seed).choice(len(paths), size=wanted, replace=False)
    photos = [load_image_file(paths[i]) for i in picked]
    pixels = np.array([photo.shape[0] * photo.shape[1] for photo in photos]) / 1e6
    detectors = [(Path(name).name, PaddleDetector.from_dir(resolve(name), threads=args.threads))
                 for name in args.models]
    times: dict[str, list[float]] = {name: [] for name, _ in detectors}
    for index, photo in enumerate(photos):
        for name, detector in detectors:
            started = time.perf_counter()
            detector.detect(photo)
            if index >= args.warmup:
                times[name].append((time.perf_counter() - started) * 1000)
    base = args.models[-1]
    base_p50 = statistics.median(times[Path(base).name])
    print(f"{args.photos} drink-dev photos ({np.median(pixels):.2f} Mpx median), threads={args.threads}, "
          f"interleaved photo by photo")
    print(f"{'detector':<40} {'input':>9} {'p50 ms':>8} {'p95 ms':>8} {'p50 / ' + Path(base).name[:18]:>30}")
    for name, detector in detectors:
        samples = times[name]
        p50 = statistics.median(samples)
        p95 = float(np.percentile(samples, 95))
        size = "x".join(str(v) for v in detector.input_size)
        print(f"{name:<40} {size:>9} {p50:8.1f} {p95:8.1f} {p50 / base_p50:30.2f}")


if __name__ == "__main__":
    main()
