"""Command line: ``python -m training.engine.cli train|eval ...`` (no Django needed).

    train      --config run.yaml --data train/labels.txt --out runs/r1 [--eval dev/labels.txt]
    train-head --config lite0.yaml --data dev/labels.txt --split training/splits/drink-dev.json --out models/extractor/NAME
    eval       --model DIR|colour-histogram --gallery DIR [--labels FILE] [--mode split] [--json]
               [--pipeline [--detector DIR|none] [--unknown FILE] [--scenes TSV]]
    export     --run runs/r1 --out models/extractor/NAME [--colour-weight 0.5] [--name NAME] [--version V]
    train-det  --config det.yaml --data composites/boxes.jsonl --out runs/d1 [--eval held-out/boxes.jsonl]
    train-det-head --config lite0_det.yaml --data a/boxes.jsonl [--data b/boxes.jsonl ...] --out runs/d2
               [--eval held-out/boxes.jsonl]
    eval-det   --model DIR [--boxes held-out/boxes.jsonl] [--photos dev/labels.txt] [--json]
    eval-crops --model DIR --gallery DIR [--split FILE] [--queries FILE ...] [--detector DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .dataset import ImageDataset
from .evaluate import MODES, evaluate_extractor, format_report_table

BASELINES = ("colour-histogram",)
NO_DETECTOR = "none"
SHIPPED_DETECTORS = Path(__file__).resolve().parents[2] / "models" / "detector"


def build_extractor(model: str, *, threads: int = 2, batch_size: int = 16) -> Any:
    """A named baseline (``colour-histogram``) or an exported/official model directory."""
    if model in BASELINES:
        from recognition.engine.baseline import ColourHistogramExtractor

        return ColourHistogramExtractor()
    from recognition.engine.inference import PaddleExtractor

    return PaddleExtractor.from_dir(model, threads=threads, batch_size=batch_size)


def split_products(split: str | Path, part: str) -> set[str]:
    """The product names of one part (``train`` or ``held_out``) of a committed product split."""
    data = json.loads(Path(split).read_text(encoding="utf-8"))
    if part not in ("train", "held_out") or not isinstance(data.get(part), list):
        raise ValueError(f"{split}: no product list {part!r} (expected 'train' or 'held_out')")
    return {str(name) for name in data[part]}


def build_detector(detector: str | None, *, threads: int = 2) -> tuple[Any, str]:
    """(detector, its name): a folder, ``none`` (whole image only), or by default the repository's shipped
    detector (the newest under models/detector, as the platform serves it without SHITU_DETECTOR)."""
    from recognition.engine.pipeline import GivenBoxDetector

    if detector == NO_DETECTOR:
        return GivenBoxDetector([]), NO_DETECTOR
    if detector is None:
        from recognition.engine.manifest import newest_model

        manifest = newest_model(SHIPPED_DETECTORS.parent, "detector")
        if manifest is None:
            raise ValueError(f"no shipped detector under {SHIPPED_DETECTORS}; pass --detector DIR or --detector none")
        detector = str(SHIPPED_DETECTORS / manifest.name)
    from recognition.engine.inference import PaddleDetector

    return PaddleDetector.from_dir(detector, threads=threads), str(detector)


def run_eval(model: str, gallery: str | Path, labels: str | Path | None = None, *,
             mode: str = "leave_one_out", threads: int = 2, batch_size: int = 32, seed: int = 0,
             query_fraction: float = 0.5, show_progress: bool = True,
             split: str | Path | None = None, part: str = "held_out",
             queries: str | Path | None = None, pipeline: bool = False, detector: str | None = None,
             unknown: str | Path | None = None, scenes: str | Path | None = None,
             gallery_detection: bool = False) -> dict[str, Any]:
    """Score ``model`` on a label-file gallery (only ``part`` of a product ``split`` when given): leave-one-out
    or a split of it, or the photos of a second label file (``queries``) against it. The report also names
    the model and data.

    With ``pipeline`` the whole recognition is scored instead (training.engine.pipeline_eval.evaluate_pipeline):
    ``detector`` (see build_detector), photos of products absent from the gallery (``unknown``: a label file
    whose paths are relative to ``gallery``, like ``labels``) and multi-product ``scenes`` (a TSV); the
    gallery is embedded from whole photos, or from their main objects with ``gallery_detection``."""
    if not pipeline and (unknown is not None or scenes is not None or detector is not None or gallery_detection):
        raise ValueError("--unknown, --scenes, --detector and --gallery-detection need --pipeline")
    if pipeline and mode.replace("-", "_") != "leave_one_out":
        raise ValueError("--pipeline scores leave-one-out or --queries, not --mode split")
    labels_path = Path(labels) if labels else Path(gallery) / "labels.txt"
    dataset = ImageDataset.from_label_file(labels_path, image_root=gallery)
    if split is not None:
        keep = split_products(split, part)
        samples = [s for s in dataset.samples if s.label in keep]
        if not samples:
            raise ValueError(f"no photo of {labels_path} belongs to the {part} part of {split}")
        dataset = ImageDataset(samples)
    extractor = build_extractor(model, threads=threads, batch_size=batch_size)
    if pipeline:
        return {"model": model, "gallery": str(gallery), "labels": str(labels_path),
                **({"split": str(split), "part": part} if split is not None else {}),
                **_pipeline_report(extractor, dataset, Path(gallery), threads=threads, detector=detector,
                                   queries=Path(queries) if queries is not None else None,
                                   unknown=Path(unknown) if unknown is not None else None,
                                   scenes=Path(scenes) if scenes is not None else None,
                                   gallery_detection=gallery_detection, show_progress=show_progress)}
    if queries is not None:
        return {"model": model, "gallery": str(gallery), "labels": str(labels_path),
                **({"split": str(split), "part": part} if split is not None else {}),
                **_query_file_report(extractor, dataset, Path(gallery), Path(queries), batch_size=batch_size,
                                     show_progress=show_progress)}
    with _extract_bar(len(dataset), show=show_progress) as advance:
        report = evaluate_extractor(extractor, dataset, mode=mode, batch_size=batch_size, seed=seed,
                                    query_fraction=query_fraction, progress=lambda done, _total: advance(done))
    return {"model": model, "gallery": str(gallery), "labels": str(labels_path),
            **({"split": str(split), "part": part} if split is not None else {}), **report}


def _pipeline_report(extractor: Any, gallery: ImageDataset, gallery_root: Path, *, threads: int,
                     detector: str | None, queries: Path | None, unknown: Path | None, scenes: Path | None,
                     gallery_detection: bool, show_progress: bool) -> dict[str, Any]:
    """The whole pipeline (detector, verification, calibrated "no match") on the gallery, with a bar per stage."""
    import time

    from .pipeline_eval import evaluate_pipeline, read_scenes

    started = time.perf_counter()
    found_detector, detector_name = build_detector(detector, threads=threads)
    query_set = ImageDataset.from_label_file(queries) if queries is not None else None
    sources = _query_sources(gallery, gallery_root, queries, query_set) if query_set is not None else None
    unknown_set = ImageDataset.from_label_file(unknown, image_root=gallery_root) if unknown is not None else None
    scene_list = read_scenes(scenes) if scenes is not None else None
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if not show_progress:
            return
        from tqdm import tqdm

        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="img", file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        report = evaluate_pipeline(found_detector, extractor, gallery, queries=query_set, query_sources=sources,
                                   unknown=unknown_set, scenes=scene_list, gallery_detection=gallery_detection,
                                   progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    return {**report, "detector": detector_name, "gallery_detection": gallery_detection,
            **({"queries_file": str(queries), "sources_left_out": int(sum(s >= 0 for s in sources))}
               if queries is not None and sources is not None else {}),
            **({"unknown_file": str(unknown)} if unknown is not None else {}),
            **({"scenes_file": str(scenes)} if scenes is not None else {}),
            "seconds": round(time.perf_counter() - started, 3)}


def _query_sources(gallery: ImageDataset, gallery_root: Path, queries: Path, query_set: ImageDataset) -> Any:
    """Per query, the gallery position of the photo it was made from (``sources.tsv`` beside the query file:
    query path, then the source photo relative to ``gallery_root``), -1 where none."""
    import numpy as np

    exclude = np.full(len(query_set), -1, dtype=np.int64)
    sources_path = queries.parent / "sources.tsv"
    if sources_path.is_file():
        gallery_index = {Path(s.source).resolve(): i for i, s in enumerate(gallery.samples)}
        query_index = {Path(s.source).resolve(): i for i, s in enumerate(query_set.samples)}
        for line in sources_path.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                query_rel, source_rel = line.split("\t", 1)
                q = query_index.get((queries.parent / query_rel).resolve())
                if q is not None:
                    exclude[q] = gallery_index.get((gallery_root / source_rel).resolve(), -1)
    return exclude


def _query_file_report(extractor: Any, gallery: ImageDataset, gallery_root: Path, queries: Path, *,
                       batch_size: int, show_progress: bool) -> dict[str, Any]:
    """Photos of ``queries`` searched in ``gallery``; a ``sources.tsv`` beside the query file (query path, then
    the gallery photo it was made from, relative to ``gallery_root``) leaves that photo out of its ranking."""
    import time

    from .evaluate import extract_features, retrieval_metrics

    query_set = ImageDataset.from_label_file(queries)
    exclude = _query_sources(gallery, gallery_root, queries, query_set)
    started = time.perf_counter()
    with _extract_bar(len(gallery) + len(query_set), show=show_progress) as advance:
        gallery_feats = extract_features(extractor, gallery, batch_size=batch_size,
                                         progress=lambda done, _total: advance(done))
        query_feats = extract_features(extractor, query_set, batch_size=batch_size,
                                       progress=lambda done, _total: advance(len(gallery) + done))
    metrics = retrieval_metrics(query_feats, query_set.label_names, gallery_feats, gallery.label_names,
                                exclude_self=False, exclude_items=exclude)
    return {"mode": "queries", "queries_file": str(queries), "images": len(gallery),
            "identities": int(len(set(gallery.label_names))), **metrics,
            "sources_left_out": int((exclude >= 0).sum()), "seconds": round(time.perf_counter() - started, 3)}


def render_eval(report: dict[str, Any], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(report, ensure_ascii=False, indent=2)
    if report.get("mode") == "pipeline":
        return _render_pipeline(report)
    return format_report_table([(Path(report["model"]).name or report["model"], report)])


def _render_pipeline(report: dict[str, Any]) -> str:
    def share(key: str) -> str:
        value = report.get(key)
        return "-" if value is None else f"{value:.3f}"

    lines = [f"pipeline: model {Path(report['model']).name or report['model']}, detector "
             f"{Path(report['detector']).name or report['detector']}; gallery {report['images']} photos, "
             f"{report['identities']} products; calibration from the {report['calibration_source']} "
             f"(threshold {report['calibration']['threshold']:.3f})",
             f"known queries {report['queries']}: recall@1 {share('recall@1')}, recall@5 {share('recall@5')}, "
             f"answered {share('known_coverage')}, right when answered {share('known_precision')}, "
             f"first object a detected box {share('known_answer_from_a_detected_box')}"]
    if report.get("unknown_photos"):
        lines.append(f"unknown products: {report['unknown_photos']} photos, answered 'no match' {share('unknown_rejected')}")
    if report.get("scenes_total"):
        lines.append(f"scenes: {report['scenes_right']} of {report['scenes_total']} with every product recognised")
    if report.get("ms_p50") is not None:
        lines.append(f"per photo ms p50 / p95: {report['ms_p50']:.0f} / {report['ms_p95']:.0f}")
    return "\n".join(lines)


@contextmanager
def _extract_bar(total: int, *, show: bool) -> Iterator[Callable[[int], None]]:
    """An "extract" tqdm bar on stderr (nothing when not ``show``) and ``advance(images_done)`` to move it."""
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="extract", unit="img", file=sys.stderr, leave=False)

    def advance(done: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(desc: str) -> tuple[Any, Any]:
    """A per-mille tqdm bar and the ``progress(fraction, info)`` callback both trainers report to."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", file=sys.stderr)

    def progress(fraction: float, info: dict[str, Any]) -> None:
        bar.update(int(fraction * 1000) - bar.n)
        if info.get("phase") == "train":
            bar.set_postfix(step=info["step"], loss=f"{info['loss']:.3f}", lr=f"{info['lr']:.2e}")
        elif info.get("phase") != "checkpoint":  # a save between steps: keep showing the last step
            bar.set_postfix(phase=info.get("phase"))

    return bar, progress


def _yaml(path: str | None) -> dict[str, Any]:
    import yaml

    return (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}) if path else {}


def _train(args: argparse.Namespace) -> int:
    from .trainer import TrainConfig, train

    config = TrainConfig.from_mapping(_yaml(args.config), out_dir=args.out, epochs=args.epochs,
                                      max_steps=args.max_steps, threads=args.threads)
    train_set = ImageDataset.from_label_file(args.data, image_root=args.image_root)
    eval_sets = {Path(path).parent.name or f"eval{i}": ImageDataset.from_label_file(path)
                 for i, path in enumerate(args.eval or [])}
    bar, progress = _progress_bar("train")
    try:
        result = train(config, train_set, eval_sets, progress=progress)
    finally:
        bar.close()
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    return 0 if result.status == "completed" else 3


def _train_head(args: argparse.Namespace) -> int:
    from .head_training import HeadTrainConfig, export_head_model, train_head

    config = HeadTrainConfig.from_mapping(_yaml(args.config), epochs=args.epochs, threads=args.threads)
    dataset = ImageDataset.from_label_file(args.data, image_root=args.image_root)
    if args.split:
        keep = split_products(args.split, args.part)
        dataset = ImageDataset([s for s in dataset.samples if s.label in keep])
    bar, progress = _progress_bar("train-head")
    try:
        result = train_head(dataset, config, cache_dir=args.cache, progress=progress)
    finally:
        bar.close()
    data = {"labels": str(args.data), "images": len(dataset), "products": dataset.num_classes,
            **({"split": str(args.split), "part": args.part} if args.split else {})}
    manifest = export_head_model(result, args.out, class_names=dataset.class_names, extra={"data": data})
    print(json.dumps({"model_dir": str(args.out), "name": manifest.name, "version": manifest.version,
                      "seconds": round(result.seconds, 1), "feature_cache_seconds": round(result.cache_seconds, 1),
                      "final_loss": result.log[-1]["loss"] if result.log else None, **data},
                     ensure_ascii=False, indent=2))
    return 0


def _train_det(args: argparse.Namespace) -> int:
    from .det_data import DetectionDataset
    from .det_trainer import DetTrainConfig, train_detector

    config = DetTrainConfig.from_mapping(_yaml(args.config), out_dir=args.out, epochs=args.epochs,
                                         max_steps=args.max_steps, threads=args.threads)
    train_set = DetectionDataset.from_jsonl(args.data)
    eval_set = DetectionDataset.from_jsonl(args.eval) if args.eval else None
    bar, progress = _progress_bar("train-det")
    try:
        result = train_detector(config, train_set, eval_set, progress=progress)
    finally:
        bar.close()
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _train_det_head(args: argparse.Namespace) -> int:
    from .det_data import DetectionDataset
    from .det_head_training import DetHeadConfig, cache_maps, train_det_head

    config = DetHeadConfig.from_mapping(_yaml(args.config), epochs=args.epochs, max_steps=args.max_steps,
                                        threads=args.threads)
    datasets = [DetectionDataset.from_jsonl(path) for path in args.data]
    eval_samples = None
    if args.eval:
        held_out = DetectionDataset.from_jsonl(args.eval)
        eval_samples = [held_out.load(i) for i in range(len(held_out))]
    bar, progress = _progress_bar("backbone maps")
    try:
        cache = cache_maps(datasets, config, args.cache, progress=progress)
    finally:
        bar.close()
    bar, progress = _progress_bar("train-det-head")
    try:
        result = train_det_head(cache, config, args.out, eval_samples=eval_samples, progress=progress)
    finally:
        bar.close()
    result["data"] = [str(path) for path in args.data]
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def run_eval_det(model: str, *, boxes: str | None = None, photos: str | None = None, extractor: str | None = None,
                 threads: int = 2, min_area: float = 0.3) -> dict[str, Any]:
    """The exported detector on held-out composites (mAP@0.5, recall) and on real photos without boxes.

    Real photos (a label file such as drink-dev's) carry no boxes, but their product fills most of the
    frame: a photo counts as found when a kept box (top 5, score >= 0.2) covers ``min_area`` of it.
    """
    from recognition.engine.inference import PaddleDetector

    from .det_data import DetectionDataset
    from .det_eval import evaluate_detector, evaluate_targets

    detector = PaddleDetector.from_dir(model, threads=threads)

    def rows(image: Any) -> Any:
        import numpy as np

        found = detector.detect(image)
        return np.array([[b.score, b.xmin, b.ymin, b.xmax, b.ymax] for b in found], np.float32).reshape(-1, 5)

    report: dict[str, Any] = {"model": model}
    if boxes:
        dataset = DetectionDataset.from_jsonl(boxes)
        samples = [dataset.load(i) for i in range(len(dataset))]
        report["composites"] = evaluate_detector(rows, samples)
        targets = [(image, truth, sample.target) for (image, truth), sample in zip(samples, dataset.samples)]
        if any(target >= 0 for _, _, target in targets):  # shelf scenes mark what the camera points at
            report["composites"].update(evaluate_targets(rows, targets))
    if photos:
        dataset = ImageDataset.from_label_file(photos)
        found = any_box = 0
        for index in range(len(dataset)):
            image = dataset.load(index)
            kept = [r for r in rows(image)[:5] if r[0] >= 0.2]
            area = image.shape[0] * image.shape[1]
            any_box += bool(kept)
            found += any((r[3] - r[1]) * (r[4] - r[2]) >= min_area * area for r in kept)
        report["photos"] = {"images": len(dataset), "found": found / len(dataset), "any_box": any_box / len(dataset),
                            "min_area": min_area}
        if extractor:
            from .pipeline_eval import pipeline_recall

            report["pipeline"] = {"extractor": extractor,
                                  **pipeline_recall(detector, build_extractor(extractor, threads=threads), dataset)}
    return report


def _eval_det(args: argparse.Namespace) -> int:
    report = run_eval_det(args.model, boxes=args.boxes, photos=args.photos, extractor=args.extractor,
                          threads=args.threads)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    if "composites" in report:
        c = report["composites"]
        print(f"held-out composites: {c['images']} images, {c['boxes']} boxes, mAP@0.5 {c['mAP@0.5']:.3f}, "
              f"recall (top {c['max_results']}, score >= {c['score_threshold']}) {c['recall']:.3f}")
        if "target_found" in c:
            print(f"targets: {c['scenes']} scenes, target among the kept boxes {c['target_found']:.3f}, "
                  f"main object is the target {c['main_object_is_target']:.3f}")
    if "photos" in report:
        p = report["photos"]
        print(f"photos: {p['images']} images, main product found (kept box >= {p['min_area']:.0%} of the frame) "
              f"{p['found']:.3f}, any kept box {p['any_box']:.3f}")
    if "pipeline" in report:
        p = report["pipeline"]
        print(f"pipeline recall@1 (leave-one-out, extractor {p['extractor']}): with the detector {p['recall@1']:.3f}, "
              f"whole image only {p['recall@1_whole_image']:.3f}; answer from a detected box "
              f"{p['answer_from_a_detected_box']:.1%}")
    return 0


def run_eval_crops(model: str, gallery: str | Path, labels: str | Path | None = None, *, split: str | Path | None = None,
                   part: str = "held_out", queries: Sequence[str | Path] = (), detector: str | None = None,
                   gallery_crops: str = "whole_image", threads: int = 2, show_progress: bool = True) -> dict[str, Any]:
    """recall@1 of the main-object crop, the detector's best box, the whole photo and the centre crop
    (training.engine.crop_eval), leave-one-out on the gallery's photos and for each ``queries`` file (its
    ``sources.tsv`` leaves each query's source photo out)."""
    from .crop_eval import crop_retrieval

    labels_path = Path(labels) if labels else Path(gallery) / "labels.txt"
    dataset = ImageDataset.from_label_file(labels_path, image_root=gallery)
    if split is not None:
        keep = split_products(split, part)
        dataset = ImageDataset([s for s in dataset.samples if s.label in keep])
        if not len(dataset):
            raise ValueError(f"no photo of {labels_path} belongs to the {part} part of {split}")
    found_detector, detector_name = build_detector(detector, threads=threads)
    query_sets = []
    for path in queries:
        query_set = ImageDataset.from_label_file(path)
        query_sets.append((Path(path).parent.name or str(path), query_set,
                           _query_sources(dataset, Path(gallery), Path(path), query_set)))
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if show_progress:
            from tqdm import tqdm

            bar = bars.setdefault(stage, tqdm(total=total, desc=f"detect {stage}", unit="img", file=sys.stderr,
                                              leave=False))
            bar.update(done - bar.n)

    try:
        report = crop_retrieval(found_detector, build_extractor(model, threads=threads), dataset,
                                query_sets=query_sets, gallery_crops=gallery_crops, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    return {"model": model, "detector": detector_name, "gallery": str(gallery),
            **({"split": str(split), "part": part} if split is not None else {}), **report}


def _eval_crops(args: argparse.Namespace) -> int:
    from .crop_eval import render_crop_report

    report = run_eval_crops(args.model, args.gallery, args.labels, split=args.split, part=args.part,
                            queries=args.queries or (), detector=args.detector, gallery_crops=args.gallery_crops,
                            threads=args.threads, show_progress=not args.no_progress)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else render_crop_report(report))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .trainer import export_run

    manifest = export_run(args.run, args.out, colour_weight=args.colour_weight, name=args.name, version=args.version)
    print(json.dumps({"out": args.out, "name": manifest.name, "version": manifest.version,
                      "feature_dim": manifest.feature_dim, "fusion": manifest.extra.get("fusion")}, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    report = run_eval(args.model, args.gallery, args.labels, mode=args.mode, threads=args.threads,
                      batch_size=args.batch_size, seed=args.seed, query_fraction=args.query_fraction,
                      show_progress=not args.no_progress, split=args.split, part=args.part, queries=args.queries,
                      pipeline=args.pipeline, detector=args.detector, unknown=args.unknown, scenes=args.scenes,
                      gallery_detection=args.gallery_detection)
    print(render_eval(report, as_json=args.json))
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Shared by this CLI and ``manage.py shitu_eval``."""
    parser.add_argument("--gallery", required=True, help="folder the label file's paths are relative to")
    parser.add_argument("--labels", help="label file 'path<TAB>label' (default: GALLERY/labels.txt)")
    parser.add_argument("--mode", default="leave-one-out", choices=[m.replace("_", "-") for m in MODES])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="split mode: which images become queries")
    parser.add_argument("--query-fraction", type=float, default=0.5)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--queries", help="a second label file scored against the gallery (instead of leave-one-out); "
                                          "a sources.tsv beside it leaves each query's source photo out")
    parser.add_argument("--split", help="product split JSON (e.g. training/splits/drink-dev.json): score one part only")
    parser.add_argument("--part", default="held_out", choices=("held_out", "train"), help="with --split")
    parser.add_argument("--pipeline", action="store_true",
                        help="score the whole recognition (detector, verification, calibrated 'no match') on photos")
    parser.add_argument("--detector", help=f"with --pipeline: detector folder or '{NO_DETECTOR}' "
                                           "(default: the shipped detector)")
    parser.add_argument("--unknown", help="with --pipeline: label file (paths relative to GALLERY) of products "
                                          "absent from the gallery; reports the share answered 'no match'")
    parser.add_argument("--scenes", help="with --pipeline: TSV 'photo<TAB>label;label' ('|' between alternatives, "
                                         "photos relative to the TSV); reports photos with every product recognised")
    parser.add_argument("--gallery-detection", action="store_true",
                        help="with --pipeline: embed gallery photos from their main objects (a gallery's "
                             "detect_references), instead of whole (the default)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.engine.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train (or resume) a feature extractor")
    train_parser.add_argument("--config", help="YAML with TrainConfig fields")
    train_parser.add_argument("--data", required=True, help="training label file")
    train_parser.add_argument("--image-root", help="default: the label file's folder")
    train_parser.add_argument("--out", required=True, help="run folder (resumes if it has checkpoints)")
    train_parser.add_argument("--eval", action="append", help="label file evaluated after each epoch")
    train_parser.add_argument("--epochs", type=int)
    train_parser.add_argument("--max-steps", type=int)
    train_parser.add_argument("--threads", type=int)
    head_parser = commands.add_parser("train-head", help="train an ImageNet-started extractor's top on cached "
                                                         "backbone features and export it")
    head_parser.add_argument("--config", help="YAML with HeadTrainConfig fields")
    head_parser.add_argument("--data", required=True, help="training label file")
    head_parser.add_argument("--image-root", help="default: the label file's folder")
    head_parser.add_argument("--split", help="product split JSON: train on one part only")
    head_parser.add_argument("--part", default="train", choices=("train", "held_out"))
    head_parser.add_argument("--cache", default="var/feature-cache", help="where backbone features are cached")
    head_parser.add_argument("--out", required=True, help="model folder to write (replaced if present)")
    head_parser.add_argument("--epochs", type=int)
    head_parser.add_argument("--threads", type=int)
    eval_parser = commands.add_parser("eval", help="retrieval metrics of a model on a labelled gallery")
    eval_parser.add_argument("--model", required=True, help=f"model folder or one of {BASELINES}")
    add_eval_arguments(eval_parser)
    export_parser = commands.add_parser("export", help="a finished run as a model folder (inference + training weights)")
    export_parser.add_argument("--run", required=True, help="a completed training run folder")
    export_parser.add_argument("--out", required=True, help="model folder to write (replaced if present)")
    export_parser.add_argument("--colour-weight", type=float, help="fuse the colour histogram with this weight (0..1)")
    export_parser.add_argument("--name")
    export_parser.add_argument("--version")
    det_parser = commands.add_parser("train-det", help="train (or resume) the mainbody detector")
    det_parser.add_argument("--config", help="YAML with DetTrainConfig fields")
    det_parser.add_argument("--data", required=True, help="boxes.jsonl of training composites")
    det_parser.add_argument("--out", required=True, help="run folder (resumes if it has checkpoints)")
    det_parser.add_argument("--eval", help="boxes.jsonl evaluated after each epoch (held-out composites)")
    det_parser.add_argument("--epochs", type=int)
    det_parser.add_argument("--max-steps", type=int)
    det_parser.add_argument("--threads", type=int)
    det_head_parser = commands.add_parser("train-det-head", help="train the mainbody detector's neck and head on "
                                                                 "cached maps of a frozen ImageNet backbone")
    det_head_parser.add_argument("--config", help="YAML with DetHeadConfig fields")
    det_head_parser.add_argument("--data", required=True, action="append", help="boxes.jsonl (repeatable)")
    det_head_parser.add_argument("--out", required=True, help="run folder; the detector is exported to OUT/model")
    det_head_parser.add_argument("--eval", help="boxes.jsonl scored after training (held-out shelf scenes)")
    det_head_parser.add_argument("--cache", default="var/feature-cache", help="where backbone maps are cached")
    det_head_parser.add_argument("--epochs", type=int)
    det_head_parser.add_argument("--max-steps", type=int)
    det_head_parser.add_argument("--threads", type=int)
    det_eval_parser = commands.add_parser("eval-det", help="detector metrics on composites and real photos")
    det_eval_parser.add_argument("--model", required=True, help="exported detector folder")
    det_eval_parser.add_argument("--boxes", help="boxes.jsonl with exact boxes (held-out composites)")
    det_eval_parser.add_argument("--photos", help="label file of real photos whose product fills the frame")
    det_eval_parser.add_argument("--extractor", help="with --photos: also the pipeline's recall@1 with this extractor "
                                                     f"(folder or {BASELINES[0]}) with and without the detector")
    det_eval_parser.add_argument("--threads", type=int, default=2)
    det_eval_parser.add_argument("--json", action="store_true")
    crops_parser = commands.add_parser("eval-crops", help="recall@1 of the main-object crop vs the whole photo and "
                                                          "the centre crop")
    crops_parser.add_argument("--model", required=True, help="extractor folder")
    crops_parser.add_argument("--gallery", required=True, help="folder the label file's paths are relative to")
    crops_parser.add_argument("--labels", help="label file (default: GALLERY/labels.txt)")
    crops_parser.add_argument("--split", help="product split JSON: only --part's products")
    crops_parser.add_argument("--part", default="held_out", choices=("held_out", "train"))
    crops_parser.add_argument("--queries", action="append", help="a label file of query photos (repeatable); a "
                                                                 "sources.tsv beside it leaves each source photo out")
    crops_parser.add_argument("--detector", help=f"detector folder or '{NO_DETECTOR}' (default: the shipped one)")
    crops_parser.add_argument("--gallery-crops", default="whole_image", choices=("whole_image", "main_object"),
                              help="how gallery photos are embedded (a gallery's detect_references)")
    crops_parser.add_argument("--threads", type=int, default=2)
    crops_parser.add_argument("--no-progress", action="store_true")
    crops_parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    handlers = {"train": _train, "train-head": _train_head, "eval": _eval, "export": _export, "train-det": _train_det,
                "train-det-head": _train_det_head, "eval-det": _eval_det, "eval-crops": _eval_crops}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
