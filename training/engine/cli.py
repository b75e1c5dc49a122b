"""Command line: ``python -m training.engine.cli train|eval ...`` (no Django needed).

    train      --config run.yaml --data train/labels.txt --out runs/r1 [--eval dev/labels.txt]
    eval       --model DIR|colour-histogram --gallery DIR [--labels FILE] [--mode split] [--json]
    export     --run runs/r1 --out models/extractor/NAME [--colour-weight 0.5] [--name NAME] [--version V]
    train-det  --config det.yaml --data composites/boxes.jsonl --out runs/d1 [--eval held-out/boxes.jsonl]
    eval-det   --model DIR [--boxes held-out/boxes.jsonl] [--photos dev/labels.txt] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .dataset import ImageDataset
from .evaluate import MODES, evaluate_extractor, format_report_table

BASELINES = ("colour-histogram",)


def build_extractor(model: str, *, threads: int = 2, batch_size: int = 16) -> Any:
    """A named baseline (``colour-histogram``) or an exported/official model directory."""
    if model in BASELINES:
        from recognition.engine.baseline import ColourHistogramExtractor

        return ColourHistogramExtractor()
    from recognition.engine.inference import PaddleExtractor

    return PaddleExtractor.from_dir(model, threads=threads, batch_size=batch_size)


def run_eval(model: str, gallery: str | Path, labels: str | Path | None = None, *,
             mode: str = "leave_one_out", threads: int = 2, batch_size: int = 32, seed: int = 0,
             query_fraction: float = 0.5, show_progress: bool = True) -> dict[str, Any]:
    """Score ``model`` on a label-file gallery; the report also names the model and data."""
    labels_path = Path(labels) if labels else Path(gallery) / "labels.txt"
    dataset = ImageDataset.from_label_file(labels_path, image_root=gallery)
    extractor = build_extractor(model, threads=threads, batch_size=batch_size)
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), desc="extract", unit="img", file=sys.stderr, leave=False)

    def on_batch(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        report = evaluate_extractor(extractor, dataset, mode=mode, batch_size=batch_size, seed=seed,
                                    query_fraction=query_fraction, progress=on_batch)
    finally:
        if bar is not None:
            bar.close()
    return {"model": model, "gallery": str(gallery), "labels": str(labels_path), **report}


def render_eval(report: dict[str, Any], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(report, ensure_ascii=False, indent=2)
    return format_report_table([(Path(report["model"]).name or report["model"], report)])


def _progress_bar(desc: str) -> tuple[Any, Any]:
    """A per-mille tqdm bar and the ``progress(fraction, info)`` callback both trainers report to."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", file=sys.stderr)

    def progress(fraction: float, info: dict[str, Any]) -> None:
        bar.update(int(fraction * 1000) - bar.n)
        if info.get("phase") == "train":
            bar.set_postfix(step=info["step"], loss=f"{info['loss']:.3f}", lr=f"{info['lr']:.2e}")
        else:
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


def run_eval_det(model: str, *, boxes: str | None = None, photos: str | None = None, extractor: str | None = None,
                 threads: int = 2, min_area: float = 0.3) -> dict[str, Any]:
    """The exported detector on held-out composites (mAP@0.5, recall) and on real photos without boxes.

    Real photos (a label file such as drink-dev's) carry no boxes, but their product fills most of the
    frame: a photo counts as found when a kept box (top 5, score >= 0.2) covers ``min_area`` of it.
    """
    from recognition.engine.inference import PaddleDetector

    from .det_data import DetectionDataset
    from .det_eval import evaluate_detector

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


def _export(args: argparse.Namespace) -> int:
    from .trainer import export_run

    manifest = export_run(args.run, args.out, colour_weight=args.colour_weight, name=args.name, version=args.version)
    print(json.dumps({"out": args.out, "name": manifest.name, "version": manifest.version,
                      "feature_dim": manifest.feature_dim, "fusion": manifest.extra.get("fusion")}, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    report = run_eval(args.model, args.gallery, args.labels, mode=args.mode, threads=args.threads,
                      batch_size=args.batch_size, seed=args.seed, query_fraction=args.query_fraction,
                      show_progress=not args.no_progress)
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
    det_eval_parser = commands.add_parser("eval-det", help="detector metrics on composites and real photos")
    det_eval_parser.add_argument("--model", required=True, help="exported detector folder")
    det_eval_parser.add_argument("--boxes", help="boxes.jsonl with exact boxes (held-out composites)")
    det_eval_parser.add_argument("--photos", help="label file of real photos whose product fills the frame")
    det_eval_parser.add_argument("--extractor", help="with --photos: also the pipeline's recall@1 with this extractor "
                                                     f"(folder or {BASELINES[0]}) with and without the detector")
    det_eval_parser.add_argument("--threads", type=int, default=2)
    det_eval_parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    handlers = {"train": _train, "eval": _eval, "export": _export, "train-det": _train_det, "eval-det": _eval_det}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
