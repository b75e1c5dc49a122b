"""Whole-pipeline recall: equals the extractor's leave-one-out without boxes; good boxes raise it."""
import numpy as np
import pytest

from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.types import Box
from training.engine.dataset import ImageDataset
from training.engine.evaluate import extract_features, leave_one_out
from training.engine.pipeline_eval import pipeline_recall

PRODUCT_COLOURS = [(220, 30, 30), (30, 180, 60), (40, 60, 220), (240, 200, 20)]
BACKGROUND_COLOURS = np.array([(90, 90, 90), (200, 200, 200), (120, 60, 20), (20, 100, 110), (160, 120, 200)])


def _photos(seed: int = 0):
    """Small products of a known colour at a known box, on large backgrounds drawn from colours all photos share."""
    rng = np.random.default_rng(seed)
    pairs, boxes = [], []
    for product, colour in enumerate(PRODUCT_COLOURS):
        for _ in range(3):
            palette = BACKGROUND_COLOURS[rng.choice(len(BACKGROUND_COLOURS), 2, replace=False)]
            image = palette[rng.integers(0, 2, (16, 16))].repeat(8, axis=0).repeat(8, axis=1).astype(np.uint8)
            x, y = (int(v) for v in rng.integers(0, 100, 2))
            image[y:y + 28, x:x + 28] = colour
            pairs.append((image, f"product {product}"))
            boxes.append(Box(x, y, x + 28, y + 28, score=0.9))
    return ImageDataset.from_pairs(pairs), boxes


class KnownBoxes:
    """Detector double answering with each photo's true product box (the photos are told apart by content)."""

    def __init__(self, dataset, boxes):
        self.by_photo = {dataset.load(i).tobytes(): box for i, box in enumerate(boxes)}

    def detect(self, image):
        return [self.by_photo[image.tobytes()]]


class NoBoxes:
    def detect(self, image):
        return []


def test_without_boxes_the_pipeline_scores_like_leave_one_out():
    dataset, _ = _photos()
    extractor = ColourHistogramExtractor()
    report = pipeline_recall(NoBoxes(), extractor, dataset)
    expected = leave_one_out(extract_features(extractor, dataset), dataset.label_names)
    assert report["queries"] == 12
    assert report["recall@1"] == report["recall@1_whole_image"] == pytest.approx(expected["recall@1"])
    assert report["answer_from_a_detected_box"] == 0.0


def test_boxes_on_the_products_raise_recall_over_the_whole_image():
    dataset, boxes = _photos()
    report = pipeline_recall(KnownBoxes(dataset, boxes), ColourHistogramExtractor(), dataset)
    assert report["recall@1_whole_image"] < 0.6          # the background's colour dominates the whole photo
    assert report["recall@1"] == 1.0                     # the crop holds only the product's colour
    assert report["answer_from_a_detected_box"] == 1.0
