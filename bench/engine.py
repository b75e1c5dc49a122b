"""End-to-end engine timing per stage on this CPU: decode, detect, extract (all crops in one call), search, total.

Uses models exported by the project in the official inference layout (weights random: timing does not depend
on them), a 10k-vector Flat gallery, and a 1280x960 JPEG. Prints median and p95 per stage for threads 1 and 2
with the ratio side by side. Detail benches: bench/engine_models.py (oneDNN on/off, warm-up, batching),
bench/engine_search.py (index types at 1k/100k/1M).

    .venv/bin/python bench/engine.py --runs 30
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recognition.engine.imageio import load_image  # noqa: E402
from recognition.engine.pipeline import PipelineParams, RecognitionPipeline  # noqa: E402
from recognition.engine.search import VectorIndex  # noqa: E402


def photo() -> bytes:
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (1280, 960), (200, 200, 195))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, 1100)), int(rng.integers(0, 700))
        draw.rectangle([x, y, x + int(rng.integers(60, 180)), y + int(rng.integers(120, 260))], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def export_models(root: Path) -> tuple[Path, Path]:
    import paddle

    from recognition.engine.export import export_inference_model
    from recognition.engine.nets import build_recognition_model, picodet_mainbody

    paddle.seed(0)
    extractor = build_recognition_model()
    extractor.eval()
    export_inference_model(extractor, root / "extractor", kind="extractor", input_size=(224, 224), name="bench-rec")
    detector = picodet_mainbody()
    detector.eval()
    export_inference_model(detector, root / "detector", kind="detector", input_size=(640, 640), name="bench-det")
    return root / "extractor", root / "detector"


def measure(pipeline: RecognitionPipeline, data: bytes, runs: int) -> dict[str, list[float]]:
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "extract": [], "search": [], "total": [], "boxes": []}
    for _ in range(runs):
        started = time.perf_counter()
        image = load_image(data)
        decoded = time.perf_counter()
        timed = pipeline.recognize_timed(image, PipelineParams(score_threshold=0.0, det_threshold=0.0))
        stages["decode"].append((decoded - started) * 1000)
        stages["detect"].append(timed.timings.detect_ms)
        stages["extract"].append(timed.timings.extract_ms)
        stages["search"].append(timed.timings.search_ms)
        stages["total"].append((time.perf_counter() - started) * 1000)
        stages["boxes"].append(len(pipeline.detector.detect(image)[:5]) + 1)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    from recognition.engine.inference import PaddleDetector, PaddleExtractor

    data = photo()
    with tempfile.TemporaryDirectory() as directory:
        extractor_dir, detector_dir = export_models(Path(directory))
        gallery = np.random.default_rng(1).standard_normal((10_000, 512)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        results = {}
        for threads in (1, 2):
            index = VectorIndex(dim=512, index_type="Flat", threads=threads)
            index.build(np.arange(len(gallery), dtype=np.int64), gallery)
            pipeline = RecognitionPipeline(
                PaddleDetector.from_dir(detector_dir, threads=threads), PaddleExtractor.from_dir(extractor_dir, threads=threads),
                index, labels=lambda ids: {int(i): f"item {i}" for i in ids},
            )
            results[threads] = measure(pipeline, data, args.runs)
    print(f"1280x960 JPEG, PicoDet x2.5 @640 + PP-LCNetV2 ShiTu @224 (oneDNN), 10k-vector Flat gallery, {args.runs} runs")
    print(f"candidate boxes per image (top-5 detections + whole image): {int(statistics.median(results[1]['boxes']))}")
    print(f"{'stage':10} {'1 thr p50':>10} {'p95':>8} {'2 thr p50':>10} {'p95':>8} {'2/1 p50':>8}")
    for stage in ("decode", "detect", "extract", "search", "total"):
        one, two = results[1][stage], results[2][stage]
        p50_one, p50_two = statistics.median(one), statistics.median(two)
        print(f"{stage:10} {p50_one:>10.1f} {np.percentile(one, 95):>8.1f} {p50_two:>10.1f} {np.percentile(two, 95):>8.1f} "
              f"{p50_two / p50_one:>8.2f}")
    print("extract = all candidate crops in one predictor call (crop + resize + inference); ms")


if __name__ == "__main__":
    main()
