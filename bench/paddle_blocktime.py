"""What Intel OpenMP's block time (``KMP_BLOCKTIME``) costs a recognition worker: time and CPU per photo.

Usage: .venv/bin/python bench/paddle_blocktime.py [--photos 40] [--gap-ms 100] [--rounds 3] [--values unset,1,5,0]

Each value runs in its own fresh process (the runtime reads the variable once), the values taking turns for
``--rounds`` rounds. A process loads the shipped detector and extractor (2 threads each, as a worker does),
warms up, then for each of ``--photos`` drink-dev photos runs the detector and the extractor on the photo and
its main-object crop, and then waits ``--gap-ms`` (photos arriving with gaps, as at a web service; 0: back to
back). It reports the wall time per photo (p50 over all rounds) and the CPU time the process used per photo,
waiting included: spinning threads show up there. ``unset`` stands for OpenMP's own default: the engine now
sets 1 when nothing is set (recognition/engine/cpu_runtime.py), so that child writes the default, 200, out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GALLERY = Path("/work/shared/data/drink-dev/gallery")
DETECTOR = REPO / "models/detector/shitu-det-lite0"
EXTRACTOR = REPO / "models/extractor/shitu-rec-lite0-dd53"

CHILD = r"""
import json, os, resource, sys, time
wanted = sys.argv[1]
if wanted == "unset":
    os.environ["KMP_BLOCKTIME"] = "200"  # OpenMP's documented default, written out so the engine keeps it
else:
    os.environ["KMP_BLOCKTIME"] = wanted
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from recognition.engine.boxes import crop
from recognition.engine.imageio import load_image_file
from recognition.engine.inference import PaddleDetector, PaddleExtractor
from recognition.engine.main_object import choose_main_object
gallery, photos, gap = Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]) / 1000
rows = [line.split("\t")[0] for line in (gallery / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
images = [load_image_file(gallery / row) for row in rows[::max(1, len(rows) // photos)][:photos]]
detector = PaddleDetector.from_dir(sys.argv[6], threads=2)
extractor = PaddleExtractor.from_dir(sys.argv[7], threads=2)

def one(image):
    box = choose_main_object(detector.detect(image), image.shape[1], image.shape[0])
    extractor.extract([image] + ([crop(image, box)] if box is not None else []))

for image in images[:5]:
    one(image)
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
walls, started = [], cpu()
for image in images:
    t0 = time.perf_counter()
    one(image)
    walls.append((time.perf_counter() - t0) * 1000)
    time.sleep(gap)
print(json.dumps({"walls": walls, "cpu_ms_per_photo": (cpu() - started) * 1000 / len(images)}))
"""


def run_child(value: str, photos: int, gap_ms: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KMP_BLOCKTIME"}
    done = subprocess.run([sys.executable, "-c", CHILD, value, str(REPO), str(GALLERY), str(photos), str(gap_ms),
                           str(DETECTOR), str(EXTRACTOR)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--gap-ms", type=float, default=100.0, help="wait after each photo (0: back to back)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--values", default="unset,1,5,0", help="KMP_BLOCKTIME values; 'unset' = OpenMP's 200 ms")
    args = parser.parse_args()
    values = args.values.split(",")
    walls: dict[str, list[float]] = {v: [] for v in values}
    cpus: dict[str, list[float]] = {v: [] for v in values}
    for round_ in range(args.rounds):
        for value in (values if round_ % 2 == 0 else values[::-1]):
            result = run_child(value, args.photos, args.gap_ms)
            walls[value].extend(result["walls"])
            cpus[value].append(result["cpu_ms_per_photo"])
            print(f"  round {round_ + 1} KMP_BLOCKTIME={value}: wall p50 {statistics.median(result['walls']):.1f} ms, "
                  f"CPU {result['cpu_ms_per_photo']:.1f} ms per photo", file=sys.stderr)
    base = values[0]
    print(f"{args.photos} drink-dev photos x {args.rounds} rounds, detector + extractor (2 threads each), "
          f"{args.gap_ms:.0f} ms between photos; load average {os.getloadavg()[0]:.2f}")
    print(f"{'KMP_BLOCKTIME':>14} {'wall p50 ms':>12} {'ratio':>6} {'wall p95 ms':>12} {'CPU ms/photo':>13} {'ratio':>6}")
    for value in values:
        wall50 = statistics.median(walls[value])
        wall95 = sorted(walls[value])[int(0.95 * (len(walls[value]) - 1))]
        cpu = statistics.median(cpus[value])
        print(f"{value:>14} {wall50:12.1f} {wall50 / statistics.median(walls[base]):6.2f} {wall95:12.1f} "
              f"{cpu:13.1f} {cpu / statistics.median(cpus[base]):6.2f}")


if __name__ == "__main__":
    main()
