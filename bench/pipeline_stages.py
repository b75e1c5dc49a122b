"""Where a recognition's time goes, stage by stage, and what a candidate speed-up changes, on real photos.

Usage: nice -n 5 .venv/bin/python bench/pipeline_stages.py [--photos 60] [--candidate NAME ...] [--alone NAME]
       [--cache var/bench-pipeline-stages.npz] [--threads 2] [--queries var/shelf-held-out/queries.txt]

The default pipeline is built as the pipeline evaluation builds it (training/engine/pipeline_eval.py): the
shipped detector and extractor, the held-out half of drink-dev as the gallery (whole photos embedded, their
RootSIFT kept in memory), the gallery's own calibration, default ``PipelineParams``. ``--photos`` held-out
photos (seeded choice) are then recognised leave-one-out (each photo's own gallery entry hidden), from their
JPEG bytes in memory, so the decode is timed and the disk is not. ``--queries`` times scene photos instead
(shelf or zoomed-out sets, each one's source photo hidden from the gallery).

Stages: decode (bytes -> RGB), detector preprocess (resize, normalise) / network / rest (NMS rows, boxes),
crops + extractor preprocess (box selection, crop, resize, normalise), extractor network, search, query SIFT
(the wait for the photo's RootSIFT: near 0 when it ran beside the models), verification (matching + MAGSAC),
decision (labels, calibration, NMS, order). The detector's and extractor's
preprocess and network are timed by wrapping those objects' own callables; the pipeline reports the rest
(``StageTimings``).

Each ``--candidate`` runs beside the default, interleaved photo by photo (A B, then B A), and is printed
stage by stage with its ratio to the default, plus how often its answer (first object's label before the
"no match" decision, and the answered label) equals the default's and the truth on these photos. That
agreement is a smoke check; the quality gate is the pipeline evaluation (README, *Verified recognition*).
Variants in one process leak into each other (BLAS threads still spinning from one slow the next one's
detector), so effects of that kind are timed with ``--alone NAME`` against a run with no candidate. The
``before`` candidate is the pipeline as it was before this bench's changes.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recognition.engine.calibration import Calibration, calibrate_gallery  # noqa: E402
from recognition.engine.imageio import load_image  # noqa: E402
from recognition.engine.inference import PaddleDetector, PaddleExtractor  # noqa: E402
from recognition.engine.local_features import LocalFeatures  # noqa: E402
from recognition.engine.pipeline import PipelineParams, RecognitionPipeline, TimedRecognition  # noqa: E402
from recognition.engine.search import VectorIndex  # noqa: E402
from recognition.engine.verify import GeometricVerifier, PhotoMatcher, _Neighbours  # noqa: E402
from training.engine.dataset import ImageDataset  # noqa: E402
from training.engine.pipeline_eval import _HidingIndex, build_references, photo_answer  # noqa: E402

GALLERY = Path("/work/shared/data/drink-dev/gallery")
DETECTOR = "models/detector/shitu-det-lite0"
EXTRACTOR = "models/extractor/shitu-rec-lite0-dd53"
SPLIT = "training/splits/drink-dev.json"
STAGES = ("decode", "det_pre", "det_net", "det_rest", "crops_ext_pre", "ext_net", "search", "query_sift",
          "verify", "decision", "total")


class StageClock:
    """Milliseconds per stage of the current photo, filled by wrapped callables."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, function: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[stage] = self.current.get(stage, 0.0) + (time.perf_counter() - started) * 1000
        return timed


def instrument(detector: PaddleDetector, extractor: PaddleExtractor, clock: StageClock) -> None:
    """Time the models' preprocess and network calls (instance attributes shadow the class's)."""
    detector.preprocess = clock.wrap(detector.preprocess, "det_pre")  # type: ignore[method-assign]
    detector.runner.run = clock.wrap(detector.runner.run, "det_net")  # type: ignore[method-assign]
    extractor.preprocess = clock.wrap(extractor.preprocess, "ext_pre")  # type: ignore[method-assign]
    extractor.runner.run = clock.wrap(extractor.runner.run, "ext_net")  # type: ignore[method-assign]


@dataclass
class Variant:
    """One way to run the recognition: a pipeline and its params, timed by its own clock."""

    name: str
    pipeline: RecognitionPipeline
    params: PipelineParams
    clock: StageClock

    def run(self, blob: bytes) -> tuple[dict[str, float], TimedRecognition, np.ndarray]:
        self.clock.current = {}
        started = time.perf_counter()
        image = load_image(blob)
        decode = (time.perf_counter() - started) * 1000
        timed = self.pipeline.recognize_timed(image, self.params)
        t, c = timed.timings, self.clock.current
        stages = {
            "decode": decode,
            "det_pre": c.get("det_pre", 0.0),
            "det_net": c.get("det_net", 0.0),
            "det_rest": t.detect_ms - c.get("det_pre", 0.0) - c.get("det_net", 0.0),
            "crops_ext_pre": t.extract_ms - c.get("ext_net", 0.0),
            "ext_net": c.get("ext_net", 0.0),
            "search": t.search_ms,
            "query_sift": t.local_features_ms,
            "verify": t.verify_ms - t.local_features_ms,
            "decision": t.total_ms - t.detect_ms - t.extract_ms - t.search_ms - t.verify_ms,
            "total": decode + t.total_ms,
        }
        return stages, timed, image


@dataclass
class Setup:
    """What every variant shares: the gallery, its references and calibration, the hiding index view."""

    args: argparse.Namespace
    view: _HidingIndex
    names: dict[int, str]
    local: dict[int, Any]
    calibration: Any

    def variant(self, name: str, *, params: PipelineParams | None = None, threads: int | None = None) -> Variant:
        # The shipped detector's program has a fixed 320 x 320 input: another size needs a re-export.
        threads = threads or self.args.threads
        detector = PaddleDetector.from_dir(REPO / DETECTOR, threads=threads)
        extractor = PaddleExtractor.from_dir(REPO / EXTRACTOR, threads=threads)
        clock = StageClock()
        instrument(detector, extractor, clock)
        params = params or PipelineParams()
        pipeline = RecognitionPipeline(detector, extractor, self.view, self.names, params,  # type: ignore[arg-type]
                                       local_features=self.local, calibration=self.calibration)
        return Variant(name, pipeline, params, clock)


class _NumpyUnionMatcher(PhotoMatcher):
    """Matching as it was before PhotoMatcher: one numpy (OpenBLAS) product of the box's descriptors with the
    padded union of a chunk of candidates, nothing kept between calls."""

    def neighbours(self, rows: np.ndarray, keys: Any, references: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        query = self._descriptors[rows]
        width = max(len(reference) for reference in references)
        union = np.zeros((len(references), width, query.shape[1]), dtype=np.float32)
        for row, reference in enumerate(references):
            union[row, : len(reference)] = reference.descriptors
        union /= np.maximum(np.sqrt(np.einsum("ijk,ijk->ij", union, union)), 1e-6)[..., None]
        sims = (query @ union.reshape(-1, union.shape[2]).T).reshape(len(query), len(references), width)
        best = np.argmax(sims, axis=2)
        best_sim = np.take_along_axis(sims, best[..., None], axis=2)[..., 0]
        np.put_along_axis(sims, best[..., None], -np.inf, axis=2)
        return best, best_sim, sims.max(axis=2)


class PerBoxVerifier(GeometricVerifier):
    """The verifier as it was before PhotoMatcher: every box matches its candidates on its own, with numpy."""

    def verify(self, query: Any, candidates: Any, *, matcher: Any = None, rows: Any = None, keys: Any = None,
               **options: Any) -> Any:
        return super().verify(query, candidates, matcher=_NumpyUnionMatcher(query), rows=np.arange(len(query)),
                              keys=list(range(len(candidates))), **options)


class _Cv2GemmNeighbours(_Neighbours):
    """A candidate's kept neighbours with each product by cv2.gemm (the code before numpy's one-thread BLAS)."""

    def __init__(self, rows: int, reference: LocalFeatures) -> None:
        super().__init__(rows, reference)
        self.unit_t = np.ascontiguousarray(self.unit_t)  # as that code kept it: cv2.gemm reads contiguous rows

    def compute(self, query: np.ndarray, rows: np.ndarray) -> None:
        import cv2

        self.take(rows, cv2.gemm(np.ascontiguousarray(query[rows]), self.unit_t, 1.0, None, 0.0))


class _Cv2GemmMatcher(PhotoMatcher):
    """PhotoMatcher whose new candidates get cv2.gemm products; everything else is the engine's own code."""

    def neighbours(self, rows: np.ndarray, keys: Any, references: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        for key, reference in zip(keys, references):
            if key not in self._known:
                self._known[key] = _Cv2GemmNeighbours(len(self._descriptors), reference)
        return super().neighbours(rows, keys, references)


class Cv2GemmVerifier(GeometricVerifier):
    """The verifier with the photo's kept neighbours computed by cv2.gemm: the pipeline's matcher for the photo
    being verified is swapped for a `_Cv2GemmMatcher` of the same photo (one photo at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self._swapped: tuple[PhotoMatcher, PhotoMatcher] | None = None

    def verify(self, query: Any, candidates: Any, *, matcher: Any = None, **options: Any) -> Any:
        if matcher is not None:
            if self._swapped is None or self._swapped[0] is not matcher:
                self._swapped = (matcher, _Cv2GemmMatcher(matcher.photo))
            matcher = self._swapped[1]
        return super().verify(query, candidates, matcher=matcher, **options)


def with_verifier(variant: Variant, verifier: GeometricVerifier) -> Variant:
    variant.pipeline.verifier = verifier
    return variant


def with_overlap(variant: Variant, overlap: bool) -> Variant:
    variant.pipeline.overlap_local_features = overlap
    return variant


# Candidate speed-ups (or, for a change already made, the code before it): name -> the variant.
CANDIDATES: dict[str, Callable[[Setup], Variant]] = {
    "cv2-gemm-matching": lambda s: with_verifier(s.variant("cv2-gemm-matching"), Cv2GemmVerifier()),
    # the early stop before stop 25: chunks of 10 candidates, decisive at 30 inliers
    "chunks-of-10": lambda s: with_verifier(s.variant("chunks-of-10"), GeometricVerifier(chunk_size=10, decisive_inliers=30)),
    "per-box-matching": lambda s: with_verifier(s.variant("per-box-matching"), PerBoxVerifier()),  # numpy, per box
    "sift-after-search": lambda s: with_overlap(s.variant("sift-after-search"), False),
    "keep-near-whole-boxes": lambda s: s.variant("keep-near-whole-boxes", params=PipelineParams(whole_image_cover=None)),
    # The pipeline as it was before this bench's changes: all three of the above.
    "before": lambda s: with_overlap(with_verifier(
        s.variant("before", params=PipelineParams(whole_image_cover=None)), PerBoxVerifier()), False),
    "threads1": lambda s: s.variant("threads1", threads=1),
    # stop 26: no second try of an unverified small main object from its own crop
    "no-main-object-zoom": lambda s: s.variant("no-main-object-zoom", params=PipelineParams(main_object_zoom=None)),
    "default-again": lambda s: s.variant("default-again"),  # the noise floor: the default against itself
}


def setup(args: argparse.Namespace) -> tuple[Setup, ImageDataset]:
    held_out = set(json.loads((REPO / SPLIT).read_text(encoding="utf-8"))["held_out"])
    dataset = ImageDataset.from_label_file(args.gallery / "labels.txt", image_root=args.gallery)
    dataset = ImageDataset([s for s in dataset.samples if s.label in held_out])
    started = time.perf_counter()
    cache = args.cache
    if cache is not None and cache.is_file():
        # The references and calibration depend only on the shipped models and default params; --cache reuses them.
        stored = np.load(cache, allow_pickle=False)
        labels = [str(v) for v in stored["labels"]]
        vectors = stored["vectors"]
        local = [LocalFeatures.from_bytes(bytes(blob)) if len(blob) else None
                 for blob in np.split(stored["local"], stored["local_bounds"][1:-1])]
        calibration = Calibration.from_dict(json.loads(str(stored["calibration"])))
        source = f"read from {cache}"
    else:
        extractor = PaddleExtractor.from_dir(REPO / EXTRACTOR, threads=args.threads)
        detector = PaddleDetector.from_dir(REPO / DETECTOR, threads=args.threads)
        refs = build_references(detector, extractor, dataset, params=PipelineParams())
        labels, vectors, local = refs.labels, refs.vectors, refs.local_features
        calibration = calibrate_gallery(vectors, labels, local, params=PipelineParams())
        source = "embedded and calibrated"
        if cache is not None:
            blobs = [np.frombuffer(f.to_bytes(), np.uint8) if f is not None else np.zeros(0, np.uint8) for f in local]
            np.savez(cache, labels=np.array(labels), vectors=vectors, local=np.concatenate(blobs),
                     local_bounds=np.cumsum([0] + [len(b) for b in blobs]),
                     calibration=json.dumps(calibration.to_dict()))
    index = VectorIndex(vectors.shape[1], "Flat")
    index.build(np.arange(len(labels), dtype=np.int64), vectors)
    print(f"gallery: {len(labels)} held-out photos {source} in {time.perf_counter() - started:.1f} s", flush=True)
    return Setup(args, _HidingIndex(index), dict(enumerate(labels)), dict(enumerate(local)), calibration), dataset


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def print_breakdown(name: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{name}: {len(rows)} photos")
    print(f"  {'stage':<14} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'share':>6}")
    mean_total = statistics.fmean(r["total"] for r in rows)
    for stage in STAGES:
        values = [r[stage] for r in rows]
        share = statistics.fmean(values) / mean_total if stage != "total" else 1.0
        print(f"  {stage:<14} {percentile(values, 50):8.1f} {percentile(values, 95):8.1f} "
              f"{statistics.fmean(values):8.1f} {share:6.1%}")


def print_comparison(base: list[dict[str, float]], cand: list[dict[str, float]], name: str) -> None:
    print(f"\n{name} against the default, interleaved, {len(base)} photos (ratio = candidate / default)")
    print(f"  {'stage':<14} {'default p50':>11} {name + ' p50':>14} {'ratio':>6} {'default p95':>11} "
          f"{name + ' p95':>14} {'ratio':>6}")
    for stage in STAGES:
        b = [r[stage] for r in base]
        c = [r[stage] for r in cand]
        b50, c50, b95, c95 = percentile(b, 50), percentile(c, 50), percentile(b, 95), percentile(c, 95)
        print(f"  {stage:<14} {b50:11.1f} {c50:14.1f} {c50 / b50 if b50 > 0.05 else float('nan'):6.2f} "
              f"{b95:11.1f} {c95:14.1f} {c95 / b95 if b95 > 0.05 else float('nan'):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=60, help="timed held-out photos")
    parser.add_argument("--warmup", type=int, default=3, help="untimed photos first (per variant)")
    parser.add_argument("--candidate", action="append", default=[], choices=sorted(CANDIDATES),
                        help="a speed-up to time beside the default (repeatable)")
    parser.add_argument("--alone", choices=sorted(CANDIDATES),
                        help="time only this candidate, without the default beside it: for effects that leak from "
                        "one variant into the next in one process (BLAS threads busy-waiting after a product)")
    parser.add_argument("--threads", type=int, default=2, help="Paddle threads per predictor")
    parser.add_argument("--gallery", type=Path, default=GALLERY)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=Path, help="time these photos instead (a label file, e.g. "
                        "var/shelf-held-out/queries.txt); a sources.tsv beside it hides each one's source photo")
    parser.add_argument("--cache", type=Path, help="an .npz to keep the gallery's references and calibration in "
                        "(written when missing, read when present: delete it after changing a shipped model)")
    args = parser.parse_args()
    shared, dataset = setup(args)
    if args.alone:
        variants = [CANDIDATES[args.alone](shared)]
    else:
        variants = [shared.variant("default")] + [CANDIDATES[name](shared) for name in args.candidate]
    reference = variants[0].name
    photos, hidden = dataset, list(range(len(dataset)))  # leave-one-out: each photo's own entry hidden
    if args.queries is not None:
        from training.engine.cli import _query_sources

        photos = ImageDataset.from_label_file(args.queries)
        hidden = [int(h) for h in _query_sources(dataset, args.gallery, args.queries, photos)]
    positions = random.Random(args.seed).sample(range(len(photos)), min(len(photos), args.photos + args.warmup))
    rows: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    same_first = {v.name: 0 for v in variants}
    same_answer = {v.name: 0 for v in variants}
    right_first = {v.name: 0 for v in variants}
    for count, position in enumerate(positions):
        sample = photos.samples[position]
        blob = Path(sample.source).read_bytes()
        shared.view.hidden = {hidden[position]} if hidden[position] >= 0 else set()
        order = variants if count % 2 == 0 else variants[::-1]
        answers: dict[str, tuple[Any, Any]] = {}
        for variant in order:
            stages, timed, image = variant.run(blob)
            first = photo_answer([*timed.objects, *timed.rejected], image.shape[1], image.shape[0],
                                 variant.params.min_inliers)
            answers[variant.name] = (first.label if first else None,
                                     timed.objects[0].label if timed.objects else None)
            if count >= args.warmup:
                rows[variant.name].append(stages)
        if count >= args.warmup:
            for variant in variants:
                same_first[variant.name] += answers[variant.name][0] == answers[reference][0]
                same_answer[variant.name] += answers[variant.name][1] == answers[reference][1]
                right_first[variant.name] += answers[variant.name][0] == sample.label
    timed_photos = len(rows[reference])
    print_breakdown("default (shipped models, default PipelineParams)" if reference == "default" else reference,
                    rows[reference])
    for variant in variants[1:]:
        print_comparison(rows[reference], rows[variant.name], variant.name)
    print("\nanswers on these photos (first object before the decision / the answered label):")
    for variant in variants:
        print(f"  {variant.name:<14} right first {right_first[variant.name]}/{timed_photos}, same first as default "
              f"{same_first[variant.name]}/{timed_photos}, same answer {same_answer[variant.name]}/{timed_photos}")


if __name__ == "__main__":
    main()
