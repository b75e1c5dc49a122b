"""Reference-image ingest cost per worker process, stage by stage, on real photos: what an import does per image.

decode -> main-object box (shipped detector, or none) -> crop -> global features (shipped extractor, batches of
16) -> RootSIFT local features of the crop. Prints images/s for both detector settings side by side.

    .venv/bin/python bench/ingest_engine.py --images 96
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recognition.engine.boxes import crop  # noqa: E402
from recognition.engine.imageio import load_image  # noqa: E402
from recognition.engine.inference import PaddleDetector, PaddleExtractor  # noqa: E402
from recognition.engine.local_features import extract_local_features  # noqa: E402
from recognition.engine.main_object import main_object_box  # noqa: E402


def run(paths: list[Path], extractor, detector, batch: int = 16) -> dict[str, float]:
    stages = {"decode": 0.0, "detect": 0.0, "extract": 0.0, "local": 0.0}
    started = time.perf_counter()
    for start in range(0, len(paths), batch):
        crops = []
        for path in paths[start:start + batch]:
            t0 = time.perf_counter()
            pixels = load_image(path.read_bytes())
            t1 = time.perf_counter()
            box = main_object_box(detector, pixels) if detector is not None else None
            t2 = time.perf_counter()
            crops.append(pixels if box is None else crop(pixels, box))
            extract_local_features(crops[-1])
            t3 = time.perf_counter()
            stages["decode"] += t1 - t0
            stages["detect"] += t2 - t1
            stages["local"] += t3 - t2
        t4 = time.perf_counter()
        extractor.extract(crops)
        stages["extract"] += time.perf_counter() - t4
    total = time.perf_counter() - started
    return {"images/s": len(paths) / total, **{f"{k} ms": 1000 * v / len(paths) for k, v in stages.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", default=str(REPO.parent / "shared/data/drink-dev/gallery"))
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--extractor", default=str(REPO / "models/extractor/shitu-rec-lite0-dd53"))
    parser.add_argument("--detector", default=str(REPO / "models/detector/shitu-det-synth-picodet-lcnet-x075"))
    args = parser.parse_args()
    paths = sorted(Path(args.gallery).glob("*/*.jpg"))[: args.images]
    extractor = PaddleExtractor.from_dir(args.extractor, threads=2)
    detector = PaddleDetector.from_dir(args.detector, threads=2)
    rows = [("no gallery detection", run(paths, extractor, None)), ("with the detector", run(paths, extractor, detector))]
    keys = list(rows[0][1])
    print(f"{len(paths)} photos, one process, 2 threads")
    print(f"{'':22}" + "".join(f"{k:>12}" for k in keys))
    for name, row in rows:
        print(f"{name:22}" + "".join(f"{row[k]:12.1f}" for k in keys))
    print(f"ratio (detector / none) images/s: {rows[1][1]['images/s'] / rows[0][1]['images/s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
