"""Whole-pipeline evaluation on labelled photos: what a user of the platform would be answered.

``pipeline_recall``: leave-one-out recall@1 of the pipeline's top object, with the detector and on the whole
image only (does the detector help?).

``evaluate_pipeline``: whole photos through the detector, extraction, search, geometric verification and the
calibrated "no match" decision, exactly as a recognition runs (default ``PipelineParams``). The gallery is
embedded as the platform embeds references (the detector's main object), with reference local features from
the same crops, kept in memory; the calibration is fitted on that gallery by ``calibrate_gallery`` unless one
is given. Known queries (leave-one-out over the gallery, or a query file whose source photos are hidden),
photos of unknown products (should be answered "no match") and multi-product scenes are scored in one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recognition.engine.boxes import crop
from recognition.engine.calibration import DEFAULT_CALIBRATION, Calibration, calibrate_gallery
from recognition.engine.local_features import LocalFeatures, LocalFeaturesError, extract_local_features
from recognition.engine.main_object import main_object_box
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline, main_first
from recognition.engine.search import VectorIndex
from recognition.engine.types import RecognizedObject

from .evaluate import LoadableDataset

# progress(stage, done, total): stages "gallery", "calibrate", "queries", "unknown", "scenes"
StageProgress = Callable[[str, int, int], None]


def pipeline_recall(detector: Any, extractor: Any, dataset: LoadableDataset, *,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Recall@1 of the pipeline's top object, with ``detector`` and with the whole image only.

    Gallery photos are embedded from their main object (main_object.py) when there is a detector, as a
    gallery with ``detect_references`` does, from the whole photo when there is none.
    """
    images = [dataset.load(position) for position in range(len(dataset))]
    names = list(dataset.label_names)
    hidden = [-1]

    def labels(wanted: Sequence[int]) -> dict[int, str]:
        return {item: names[item] for item in wanted if item != hidden[0]}

    params = PipelineParams(score_threshold=0.0, top_k=6)  # always an answer; k + 1 for the hidden self-match
    pipelines = {}
    for key, boxes_from in (("detector", detector), ("whole_image", GivenBoxDetector([]))):
        crops = []
        for image in images:
            box = main_object_box(boxes_from, image)
            crops.append(crop(image, box) if box is not None else image)
        gallery = np.concatenate([extractor.extract(crops[start:start + 32]) for start in range(0, len(crops), 32)])
        index = VectorIndex(dim=gallery.shape[1], index_type="Flat")
        index.build(np.arange(len(images), dtype=np.int64), gallery)
        pipelines[key] = RecognitionPipeline(boxes_from, extractor, index, labels, params)
    right = {"detector": 0, "whole_image": 0}
    boxes_used = 0
    counts = Counter(names)
    queries = [position for position, name in enumerate(names) if counts[name] > 1]  # others have nothing to find
    for done, position in enumerate(queries, start=1):
        hidden[0] = position
        for key, pipeline in pipelines.items():
            objects = pipeline.recognize(images[position])
            right[key] += bool(objects) and objects[0].label == names[position]
            if key == "detector" and objects:
                boxes_used += not objects[0].box.whole_image
        if progress is not None:
            progress(done, len(queries))
    count = max(1, len(queries))
    return {"images": len(dataset), "queries": len(queries), "recall@1": right["detector"] / count,
            "recall@1_whole_image": right["whole_image"] / count, "answer_from_a_detected_box": boxes_used / count}


@dataclass(frozen=True)
class Scene:
    """A photo and the products it shows: one set of acceptable labels per expected object."""

    path: Path
    expected: tuple[frozenset[str], ...]


def read_scenes(path: str | Path) -> list[Scene]:
    """``photo<TAB>label;label`` lines (``|`` between acceptable alternatives, ``#`` comments), photos relative
    to the file's folder."""
    path = Path(path)
    scenes = []
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"{path}:{number}: expected 'photo<TAB>label;label', got {raw!r}")
        photo, labels = line.split("\t", 1)
        expected = tuple(frozenset(a.strip() for a in group.split("|") if a.strip()) for group in labels.split(";"))
        expected = tuple(group for group in expected if group)
        if not expected:
            raise ValueError(f"{path}:{number}: no expected label")
        scenes.append(Scene(path.parent / photo.strip(), expected))
    if not scenes:
        raise ValueError(f"{path}: no scene")
    return scenes


def scene_is_right(expected: Sequence[frozenset[str]], found: Sequence[str]) -> bool:
    """Every expected object is recognised: each group gets its own recognised object (bipartite matching, so
    a scene expecting two cans of one product needs two objects with that label)."""
    owner: dict[int, int] = {}

    def assign(group: int, seen: set[int]) -> bool:
        for obj, label in enumerate(found):
            if label in expected[group] and obj not in seen:
                seen.add(obj)
                if obj not in owner or assign(owner[obj], seen):
                    owner[obj] = group
                    return True
        return False

    return all(assign(group, set()) for group in range(len(expected)))


@dataclass(frozen=True)
class References:
    """A gallery as the platform stores it: main-object vectors and the same crops' local features."""

    labels: list[str]
    vectors: np.ndarray
    local_features: list[Optional[LocalFeatures]]


def build_references(detector: Any, extractor: Any, dataset: LoadableDataset, *, params: PipelineParams,
                     gallery_detection: bool = False, batch_size: int = 16,
                     progress: StageProgress | None = None) -> References:
    """Embed every gallery photo as the platform does: whole, or (``gallery_detection``, a gallery's
    ``detect_references``) from its main object."""
    vectors, local, batch = [], [], []

    def flush() -> None:
        if batch:
            vectors.append(np.asarray(extractor.extract(batch), dtype=np.float32))
            batch.clear()

    for position in range(len(dataset)):
        image = dataset.load(position)
        box = main_object_box(detector, image) if gallery_detection else None
        main = crop(image, box) if box is not None else image
        batch.append(main)
        try:
            local.append(extract_local_features(main, max_features=params.local_features,
                                                long_side=params.local_long_side))
        except LocalFeaturesError:
            local.append(None)  # as on the platform: this reference is simply not verified
        if len(batch) >= batch_size:
            flush()
        if progress is not None:
            progress("gallery", position + 1, len(dataset))
    flush()
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, extractor.feature_dim), np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return References(list(dataset.label_names), matrix, local)


class _HidingIndex:
    """A VectorIndex view without some ids (a query's own photo), still returning k hits where it can."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self.hidden: set[int] = set()

    @property
    def dim(self) -> int:
        return self.index.dim

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(queries, k + len(self.hidden))
        if not self.hidden:
            return scores, ids
        out_scores = np.full((len(ids), k), -np.inf, dtype=scores.dtype)
        out_ids = np.full((len(ids), k), -1, dtype=ids.dtype)
        for row in range(len(ids)):
            keep = [j for j, item in enumerate(ids[row]) if int(item) not in self.hidden][:k]
            out_scores[row, : len(keep)], out_ids[row, : len(keep)] = scores[row, keep], ids[row, keep]
        return out_scores, out_ids


def photo_answer(objects: Sequence[RecognizedObject], width: int, height: int,
                 min_inliers: int) -> Optional[RecognizedObject]:
    """The object a user is shown first when every object is answered: the pipeline's own order (main_first)."""
    return main_first(objects, width, height, min_inliers)[0] if objects else None


def evaluate_pipeline(detector: Any, extractor: Any, gallery: LoadableDataset, *,
                      queries: LoadableDataset | None = None, query_sources: Sequence[int] | None = None,
                      unknown: LoadableDataset | None = None, scenes: Sequence[Scene] | None = None,
                      params: PipelineParams | None = None, calibration: Calibration | None = None,
                      gallery_detection: bool = False, batch_size: int = 16,
                      progress: StageProgress | None = None) -> dict[str, Any]:
    """Score the calibrated, verified pipeline; JSON-ready.

    Known queries are the gallery itself, leave-one-out (a product's only photo has nothing to find and is
    skipped), or ``queries`` with ``query_sources[i]`` (a gallery position, -1 for none) hidden from query i.
    recall@1 / recall@5 score the photo's first object in the pipeline's order *before* the "no match" decision
    (its top match, its top 5 matches); ``known_coverage`` is the share of known queries answered at all and
    ``known_precision`` the share of answers that are right (the photo's answer is its best accepted
    object). ``unknown_rejected`` is the share of ``unknown`` photos answered "no match"; a scene is right
    when every expected product is among the accepted objects; ``known_answer_from_a_detected_box`` is the
    share of known photos whose first object is a detection, not the whole image (is the detector used at
    all). mAP is not defined for the pipeline (it
    returns top-k matches, not a full ranking) and is reported as None.
    """
    params = params or PipelineParams()
    refs = build_references(detector, extractor, gallery, params=params, gallery_detection=gallery_detection,
                            batch_size=batch_size, progress=progress)
    source = "given"
    if calibration is None:
        calibration = calibrate_gallery(
            refs.vectors, refs.labels, refs.local_features, params=params,
            progress=(lambda done, total: progress("calibrate", done, total)) if progress is not None else None)
        source = "default" if calibration is DEFAULT_CALIBRATION else "gallery"
    index = VectorIndex(refs.vectors.shape[1], "Flat")
    index.build(np.arange(len(refs.labels), dtype=np.int64), refs.vectors)
    view = _HidingIndex(index)
    names = dict(enumerate(refs.labels))
    pipeline = RecognitionPipeline(detector, extractor, view, names, params,  # type: ignore[arg-type]
                                   local_features=dict(enumerate(refs.local_features)), calibration=calibration)
    totals: list[float] = []

    def run(image: np.ndarray, hidden: int) -> Any:
        view.hidden = {hidden} if hidden >= 0 else set()
        timed = pipeline.recognize_timed(image)
        totals.append(timed.timings.total_ms)
        return timed

    if queries is None:  # leave-one-out: each gallery photo, its own entry hidden
        known = [(position, label, position) for position, label in enumerate(refs.labels)]
        query_set = gallery
    else:
        sources = list(query_sources) if query_sources is not None else [-1] * len(queries)
        if len(sources) != len(queries):
            raise ValueError("query_sources needs one entry per query")
        known = [(position, label, int(sources[position])) for position, label in enumerate(queries.label_names)]
        query_set = queries
    counts = Counter(refs.labels)
    gallery_labels = set(counts)
    top1 = top5 = answered = answered_right = found_anywhere = scored = from_a_box = 0
    for done, (position, truth, hidden) in enumerate(known, start=1):
        # a query whose product has no other gallery photo has nothing right to find (as in retrieval_metrics)
        if counts[truth] - (hidden >= 0 and refs.labels[hidden] == truth) > 0:
            image = query_set.load(position)
            timed = run(image, hidden)
            scored += 1
            best = photo_answer([*timed.objects, *timed.rejected], image.shape[1], image.shape[0], params.min_inliers)
            top1 += best is not None and best.label == truth
            top5 += best is not None and truth in {m.label for m in best.matches[:5]}
            from_a_box += best is not None and not best.box.whole_image
            if timed.objects:
                answered += 1
                answered_right += timed.objects[0].label == truth
            found_anywhere += any(obj.label == truth for obj in timed.objects)
        if progress is not None:
            progress("queries", done, len(known))
    rejected_unknown = unknown_count = 0
    if unknown is not None:
        clash = sorted(set(unknown.label_names) & gallery_labels)
        if clash:
            raise ValueError(f"'unknown' photos of products that are in the gallery: {clash[:5]}")
        for position in range(len(unknown)):
            rejected_unknown += run(unknown.load(position), -1).no_match
            unknown_count += 1
            if progress is not None:
                progress("unknown", position + 1, len(unknown))
    scenes_right = 0
    if scenes:
        from recognition.engine.imageio import load_image_file

        for done, scene in enumerate(scenes, start=1):
            timed = run(load_image_file(scene.path), -1)
            scenes_right += scene_is_right(scene.expected, [obj.label for obj in timed.objects])
            if progress is not None:
                progress("scenes", done, len(scenes))
    skipped = len(known) - scored
    return {
        "mode": "pipeline", "images": len(refs.labels), "identities": len(gallery_labels),
        "queries": scored, "queries_without_match": skipped,
        "recall@1": top1 / scored if scored else None, "recall@5": top5 / scored if scored else None, "mAP": None,
        "known_coverage": answered / scored if scored else None,
        "known_precision": answered_right / answered if answered else None,
        "known_answered_right": answered_right / scored if scored else None,
        "known_found_anywhere": found_anywhere / scored if scored else None,
        "known_answer_from_a_detected_box": from_a_box / scored if scored else None,
        "unknown_photos": unknown_count, "unknown_rejected": rejected_unknown / unknown_count if unknown_count else None,
        "scenes_right": scenes_right if scenes else None, "scenes_total": len(scenes) if scenes else 0,
        "ms_p50": float(np.percentile(totals, 50)) if totals else None,
        "ms_p95": float(np.percentile(totals, 95)) if totals else None,
        "calibration": calibration.to_dict(), "calibration_source": source, "params": asdict(params),
    }


__all__ = ["References", "Scene", "build_references", "evaluate_pipeline", "pipeline_recall", "read_scenes",
           "scene_is_right"]
