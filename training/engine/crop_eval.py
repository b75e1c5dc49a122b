"""Which crop of a photo should be searched? recall@1 of the main-object crop against the whole photo and a centre crop.

Every query photo is cut four ways: the main object (``main_object.choose_main_object``: score, size and
centrality, whole image when no box is credible), the detector's most confident box (the old ingest rule), the
whole photo, and the centre crop (half of each side). Each crop is searched among the gallery's photos
embedded as the platform embeds references (whole photos, or their main objects with ``gallery_crops=
"main_object"``), with the query's own source photo left out. A detector that helps makes the main-object
crop win; one that picks neighbours or fragments makes it lose to the plain whole photo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

from recognition.engine.boxes import crop
from recognition.engine.main_object import MainObjectRule, choose_main_object
from recognition.engine.types import Box

from .evaluate import LoadableDataset, retrieval_metrics

CROPS = ("main_object", "best_box", "whole_image", "centre")
GALLERY_CROPS = ("whole_image", "main_object")


def centre_box(width: int, height: int) -> Box:
    """The central half of each side (a quarter of the frame), what a person framing a product would keep."""
    return Box(width / 4, height / 4, width * 3 / 4, height * 3 / 4)


def best_box(boxes: Sequence[Box], det_threshold: float) -> Optional[Box]:
    """The detector's most confident box at or above ``det_threshold`` (the rule the platform replaced)."""
    kept = [box for box in boxes if box.score >= det_threshold]
    return max(kept, key=lambda box: box.score) if kept else None


def crop_of(image: np.ndarray, boxes: Sequence[Box], kind: str, rule: MainObjectRule) -> np.ndarray:
    """``image`` cut as ``kind`` (one of CROPS) from its detections ``boxes``."""
    height, width = image.shape[:2]
    if kind == "main_object":
        chosen = choose_main_object(boxes, width, height, rule)
    elif kind == "best_box":
        chosen = best_box(boxes, rule.det_threshold)
    elif kind == "centre":
        chosen = centre_box(width, height)
    elif kind == "whole_image":
        chosen = None
    else:
        raise ValueError(f"unknown crop {kind!r}; choose from {', '.join(CROPS)}")
    return image if chosen is None else crop(image, chosen)


def _embed(extractor: Any, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    parts = [extractor.extract(list(images[start:start + batch_size])) for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, int(extractor.feature_dim)), np.float32)


def crop_retrieval(detector: Any, extractor: Any, gallery: LoadableDataset, *,
                   query_sets: Sequence[tuple[str, LoadableDataset, np.ndarray]] = (),
                   leave_one_out: bool = True, gallery_crops: str = "whole_image",
                   rule: Optional[MainObjectRule] = None,
                   progress: Optional[Callable[[str, int, int], None]] = None) -> dict[str, Any]:
    """recall@1 (and @5) per crop kind, for each query set.

    ``query_sets``: (name, photos, source) where ``source[i]`` is the gallery position photo i was made from
    (left out of its ranking; -1 for none). With ``leave_one_out`` the gallery's own photos are a query set
    too ("plain"), each without itself. Returns ``{set: {kind: {"recall@1", "recall@5", "queries"}}}`` plus
    the settings used.
    """
    if gallery_crops not in GALLERY_CROPS:
        raise ValueError(f"gallery_crops must be one of {GALLERY_CROPS}, got {gallery_crops!r}")
    rule = rule or MainObjectRule()
    names = list(gallery.label_names)

    def crops_and_boxes(stage: str, photos: LoadableDataset) -> tuple[list[np.ndarray], list[list[Box]]]:
        images, found = [], []
        for position in range(len(photos)):
            image = photos.load(position)
            images.append(image)
            found.append(list(detector.detect(image)))
            if progress is not None:
                progress(stage, position + 1, len(photos))
        return images, found

    gallery_images, gallery_boxes = crops_and_boxes("gallery", gallery)
    kind_for_gallery = "whole_image" if gallery_crops == "whole_image" else "main_object"
    gallery_vectors = _embed(extractor, [crop_of(image, boxes, kind_for_gallery, rule)
                                         for image, boxes in zip(gallery_images, gallery_boxes)])
    sets: list[tuple[str, list[np.ndarray], list[list[Box]], list[str], np.ndarray]] = []
    if leave_one_out:
        sets.append(("plain", gallery_images, gallery_boxes, names, np.arange(len(names), dtype=np.int64)))
    for set_name, photos, source in query_sets:
        images, boxes = crops_and_boxes(set_name, photos)
        sets.append((set_name, images, boxes, list(photos.label_names), np.asarray(source, dtype=np.int64)))
    report: dict[str, Any] = {"gallery_images": len(names), "gallery_crops": gallery_crops,
                              "rule": {"det_threshold": rule.det_threshold, "min_area": rule.min_area,
                                       "whole_area": rule.whole_area}}
    for set_name, images, boxes, labels, source in sets:
        report[set_name] = {}
        for kind in CROPS:
            vectors = _embed(extractor, [crop_of(image, found, kind, rule) for image, found in zip(images, boxes)])
            metrics = retrieval_metrics(vectors, labels, gallery_vectors, names, exclude_self=False,
                                        exclude_items=source)
            report[set_name][kind] = {"recall@1": float(metrics["recall@1"]), "recall@5": float(metrics["recall@5"]),
                                      "queries": int(metrics["queries"])}
        report[set_name]["main_object_share"] = float(np.mean([
            choose_main_object(found, image.shape[1], image.shape[0], rule) is not None
            for image, found in zip(images, boxes)])) if images else 0.0
    return report


def render_crop_report(report: dict[str, Any]) -> str:
    """A recall table: one row per query set, one column per crop kind, with the main object's margin."""
    sets = [key for key, value in report.items() if isinstance(value, dict) and "whole_image" in value]
    header = f"{'query set':<16}" + "".join(f"{kind:>13}" for kind in CROPS) + f"{'main-whole':>12}{'main-centre':>12}"
    lines = [f"recall@1, gallery of {report['gallery_images']} photos embedded as {report['gallery_crops']}", header]
    for name in sets:
        row = report[name]
        margin_whole = row["main_object"]["recall@1"] - row["whole_image"]["recall@1"]
        margin_centre = row["main_object"]["recall@1"] - row["centre"]["recall@1"]
        lines.append(f"{name:<16}" + "".join(f"{row[kind]['recall@1']:>13.3f}" for kind in CROPS)
                     + f"{margin_whole:>+12.3f}{margin_centre:>+12.3f}")
    return "\n".join(lines)


__all__ = ["CROPS", "GALLERY_CROPS", "best_box", "centre_box", "crop_of", "crop_retrieval", "render_crop_report"]
