"""Whole-pipeline recall on labelled photos: does the detector help the answer a user sees?

Leave-one-out, as for the extractor: every photo's vector is in the gallery; each photo then goes through the PP-ShiTu pipeline (detector boxes + the whole image, extraction, search, NMS)
with its own gallery entry hidden, and the answer is the label of the best-scoring object. The
same run without a detector (the whole image only) is the comparison.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recognition.engine.boxes import crop
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline, main_object_box
from recognition.engine.search import VectorIndex

from .evaluate import LoadableDataset


def pipeline_recall(detector: Any, extractor: Any, dataset: LoadableDataset, *,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Recall@1 of the pipeline's top object, with ``detector`` and with the whole image only.

    As on the platform, a gallery photo is embedded from its main object (the detector's best box) when
    there is a detector, from the whole photo when there is none.
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


__all__ = ["pipeline_recall"]
