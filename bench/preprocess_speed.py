"""Photo resizing before the networks: the separable numpy path against OpenCV, side by side in one run.

The detector resizes each photo to 320 px bicubic and the extractor each crop to 224 px bilinear; both now go
through OpenCV for uint8 (recognition/engine/preprocess.py). Prints ms per call and the ratio.

    .venv/bin/python bench/preprocess_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recognition.engine import preprocess  # noqa: E402


def _ms(call, repeats: int = 30) -> float:
    call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000 * (time.perf_counter() - started) / repeats


def main() -> int:
    photo = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)  # 1 Mpx
    crop = photo[100:700, 200:600]
    print(f"{'case':34}{'numpy ms':>10}{'opencv ms':>11}{'numpy / opencv':>16}")
    for name, image, size, method in (("detector input, 1 Mpx -> 320 bicubic", photo, (320, 320), "bicubic"),
                                      ("crop 400x600 -> 224 bilinear", crop, (224, 224), "bilinear")):
        numpy_path = _ms(lambda: preprocess._resize_numpy(image, size, method))
        opencv_path = _ms(lambda: preprocess.resize(image, size, method))
        print(f"{name:34}{numpy_path:10.2f}{opencv_path:11.2f}{numpy_path / opencv_path:16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
