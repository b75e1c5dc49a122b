"""The fast fine-tune of the pretrained default on a tenant gallery of products it never trained on, timed.

The tenant's gallery is the held-out half of drink-dev's committed product split: half of each product's photos
are its gallery (what the job trains on), the rest are queries. The script trains the head exactly as a fast
fine-tune job does (the default's own recipe, warm-started from its trained tensors), exports it, and prints
recall@1/@5 and mAP of the queries against the gallery, before and after, with the job's CPU and wall time.

    .venv/bin/python bench/fast_finetune.py
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from recognition.engine.inference import PaddleExtractor  # noqa: E402
from training.engine.cli import split_products  # noqa: E402
from training.engine.dataset import ImageDataset  # noqa: E402
from training.engine.evaluate import extract_features, retrieval_metrics, split_gallery_query  # noqa: E402
from training.engine.head_training import HeadTrainConfig, export_head_model, train_head  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(REPO / "models/extractor/shitu-rec-lite0-dd53"))
    parser.add_argument("--labels", default=str(REPO.parent / "shared/data/drink-dev/gallery/labels.txt"))
    parser.add_argument("--split", default=str(REPO / "training/splits/drink-dev.json"))
    parser.add_argument("--epochs", type=int, default=80, help="the fast mode's default")
    parser.add_argument("--views", type=int, default=8, help="SHITU_FINETUNE_VIEWS' default")
    args = parser.parse_args()

    held_out = split_products(args.split, "held_out")
    photos = ImageDataset([s for s in ImageDataset.from_label_file(args.labels).samples if s.label in held_out])
    names = np.asarray(photos.label_names)
    gallery_idx, query_idx = split_gallery_query(names, seed=0, query_fraction=0.5)
    gallery = ImageDataset([photos.samples[i] for i in gallery_idx])
    queries = ImageDataset([photos.samples[i] for i in query_idx])
    network = json.loads((Path(args.base) / "train_config.json").read_text())
    config = HeadTrainConfig(backbone=network["backbone"], image_size=network["image_size"],
                             feature_dim=network["feature_dim"], gem_p=network["gem_p"], views=args.views,
                             epochs=args.epochs, p=min(16, gallery.num_classes), k=4, model_name="bench-fast-ft")
    print(f"tenant gallery: {len(gallery)} photos of {gallery.num_classes} products; {len(queries)} queries")
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        result = train_head(gallery, config, cache_dir=Path(tmp) / "cache", init_from=args.base)
        export_head_model(result, Path(tmp) / "model", class_names=gallery.class_names)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows = []
        for name, folder in (("default (before)", args.base), ("fast fine-tune (after)", Path(tmp) / "model")):
            extractor = PaddleExtractor.from_dir(folder, threads=2)
            metrics = retrieval_metrics(extract_features(extractor, queries), queries.label_names,
                                        extract_features(extractor, gallery), gallery.label_names, exclude_self=False)
            rows.append((name, metrics))
    print(f"{'model':24} {'recall@1':>9} {'recall@5':>9} {'mAP':>7}")
    for name, m in rows:
        print(f"{name:24} {m['recall@1']:9.4f} {m['recall@5']:9.4f} {m['mAP']:7.4f}")
    before, after = rows[0][1], rows[1][1]
    print(f"{'gain':24} {after['recall@1'] - before['recall@1']:+9.4f} {after['recall@5'] - before['recall@5']:+9.4f} "
          f"{after['mAP'] - before['mAP']:+7.4f}")
    print(f"job: {cpu:.1f} s CPU, {wall:.1f} s wall ({result.cache_seconds:.1f} s of it caching {args.views} views "
          f"per photo)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
