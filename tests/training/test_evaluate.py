"""Retrieval metrics on hand-worked rankings, the gallery/query split, and batched extraction."""

from __future__ import annotations

import numpy as np
import pytest

from recognition.engine.baseline import ColourHistogramExtractor
from training.engine.dataset import ImageDataset
from training.engine.evaluate import (evaluate_extractor, format_report_table, leave_one_out,
                                      retrieval_metrics, split_gallery_query)

# Gallery g0..g5 = one-hot vectors, so a query's similarity to g_j is simply its j-th entry.
GALLERY = np.eye(6, dtype=np.float32)
GALLERY_LABELS = ["A", "A", "B", "B", "C", "D"]


def scores_for(order: list[int]) -> np.ndarray:
    """A query vector that ranks the gallery in ``order`` (scores 6, 5, ..., 1)."""
    scores = np.zeros(6, dtype=np.float32)
    for rank, item in enumerate(order):
        scores[item] = 6 - rank
    return scores


def test_recall_and_map_by_hand():
    queries = np.stack([
        scores_for([0, 2, 1, 3, 4, 5]),  # A: relevant at ranks 1, 3 -> AP (1/1 + 2/3) / 2 = 5/6; hit@1
        scores_for([0, 1, 2, 4, 3, 5]),  # B: relevant at ranks 3, 5 -> AP (1/3 + 2/5) / 2 = 11/30; hit@5 only
        scores_for([4, 0, 1, 2, 3, 5]),  # C: relevant at rank 1 -> AP 1; hit@1
        scores_for([0, 1, 2, 3, 4, 5]),  # D: relevant at rank 6 -> AP 1/6; no hit@5
        scores_for([0, 1, 2, 3, 4, 5]),  # E: nothing relevant -> left out, as PaddleClas does
    ])
    metrics = retrieval_metrics(queries, ["A", "B", "C", "D", "E"], GALLERY, GALLERY_LABELS,
                                exclude_self=False, ks=(1, 5))
    assert metrics["recall@1"] == pytest.approx(2 / 4)  # 0.5
    assert metrics["recall@5"] == pytest.approx(3 / 4)
    # (5/6 + 11/30 + 1 + 1/6) / 4 = (25 + 11 + 30 + 5) / 30 / 4 = 71/120
    assert metrics["mAP"] == pytest.approx(71 / 120)
    assert (metrics["queries"], metrics["queries_without_match"]) == (4, 1)


def test_leave_one_out_by_hand():
    # x0 = (1, 0), x1 = (0.6, 0.8), x2 = (0.8, -0.6), x3 = (0, -1); labels a, a, b, b
    # similarities: s01 0.6, s02 0.8, s03 0, s12 0, s13 -0.8, s23 0.6
    feats = np.array([[1, 0], [0.6, 0.8], [0.8, -0.6], [0, -1]], dtype=np.float32)
    # q0: x2, x1, x3 -> positive at rank 2 -> AP 1/2, miss@1     q1: x0 first -> AP 1, hit
    # q2: x0, x3, x1 -> positive at rank 2 -> AP 1/2, miss@1     q3: x2 first -> AP 1, hit
    metrics = leave_one_out(feats, ["a", "a", "b", "b"], ks=(1, 2))
    assert metrics["recall@1"] == pytest.approx(0.5)
    assert metrics["recall@2"] == pytest.approx(1.0)
    assert metrics["mAP"] == pytest.approx(0.75)       # (1/2 + 1 + 1/2 + 1) / 4
    assert metrics["queries"] == 4


def test_exclude_self_never_matches_itself():
    # x0 = (1, 0) a, x1 = (0.6, 0.8) a, x2 = (0.99, 0.141) b: s01 = 0.6, s02 = 0.99, s12 = 0.707
    feats = np.array([[1, 0], [0.6, 0.8], [0.99, 0.141]], dtype=np.float32)
    labels = ["a", "a", "b"]
    # without exclusion every query finds itself first
    assert retrieval_metrics(feats, labels, feats, labels, exclude_self=False, ks=(1,))["recall@1"] == 1.0
    # with it: q0 ranks x2, x1 -> miss, AP 1/2; q1 ranks x2, x0 -> miss, AP 1/2; q2 has no other b
    metrics = retrieval_metrics(feats, labels, feats, labels, exclude_self=True, ks=(1,))
    assert metrics["recall@1"] == 0.0 and metrics["mAP"] == pytest.approx(0.5)
    assert metrics["queries"] == 2 and metrics["queries_without_match"] == 1
    with pytest.raises(ValueError):
        retrieval_metrics(feats, labels, feats[:2], labels[:2], exclude_self=True)


def test_split_is_deterministic_disjoint_and_per_label():
    labels = ["a"] * 5 + ["b"] * 2 + ["c"] + ["d"] * 4
    gallery, query = split_gallery_query(labels, seed=3, query_fraction=0.5)
    again = split_gallery_query(labels, seed=3, query_fraction=0.5)
    assert np.array_equal(gallery, again[0]) and np.array_equal(query, again[1])
    assert set(gallery).isdisjoint(query) and set(gallery) | set(query) == set(range(len(labels)))
    query_counts = {label: sum(labels[i] == label for i in query) for label in "abcd"}
    assert query_counts == {"a": 3, "b": 1, "c": 0, "d": 2}  # 2.5 -> 3 (half up), 1, singleton stays, 2
    # a label's draw does not depend on the others
    only_a = split_gallery_query(labels[:5], seed=3, query_fraction=0.5)[1]
    assert list(only_a) == [i for i in query if labels[i] == "a"]


class MeanColourExtractor:
    """A real (if crude) Extractor: mean RGB, L2-normalised; records batch sizes."""

    feature_dim = 3

    def __init__(self):
        self.calls: list[int] = []

    def extract(self, crops):
        self.calls.append(len(crops))
        feats = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def colour_dataset() -> ImageDataset:
    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    pairs = []
    for name, rgb in colours.items():
        for _ in range(4):
            image = np.clip(np.array(rgb) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
            pairs.append((image, name))
    return ImageDataset.from_pairs(pairs)


def test_evaluate_extractor_batches_and_reports():
    extractor = MeanColourExtractor()
    report = evaluate_extractor(extractor, colour_dataset(), mode="leave-one-out", batch_size=5)
    assert extractor.calls == [5, 5, 2]
    assert (report["images"], report["identities"], report["queries"]) == (12, 3, 12)
    assert report["recall@1"] == 1.0 and report["mAP"] == 1.0
    split = evaluate_extractor(ColourHistogramExtractor(), colour_dataset(), mode="split", seed=1)
    assert split["mode"] == "split" and split["queries"] == 6 and split["recall@1"] == 1.0
    table = format_report_table([("mean-colour", report)])
    assert "recall@1" in table.splitlines()[0] and "1.0000" in table.splitlines()[2]
    with pytest.raises(ValueError):
        evaluate_extractor(extractor, colour_dataset(), mode="bogus")


def test_label_file_dataset(tmp_path):
    from PIL import Image

    from training.engine.dataset import ImageDataset

    (tmp_path / "a").mkdir()
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[10:30, 20:50] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "a" / "1.jpg", format="PNG")  # a PNG named .jpg
    (tmp_path / "labels.txt").write_text(
        "a/1.jpg\tcola zero 330 ml\n\na/1.jpg\tcola zero 330 ml\t20,10,50,30\na/1.jpg 雪碧\n", encoding="utf-8")
    dataset = ImageDataset.from_label_file(tmp_path / "labels.txt")
    assert dataset.class_names == ["cola zero 330 ml", "雪碧"] and list(dataset.labels) == [0, 0, 1]
    assert dataset.load(0).shape == (40, 60, 3)
    cropped = dataset.load(1)
    assert cropped.shape == (20, 30, 3) and (cropped == (255, 0, 0)).all()
    (tmp_path / "bad.txt").write_text("../escape.jpg\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="outside"):
        ImageDataset.from_label_file(tmp_path / "bad.txt")


def test_train_augment_is_seeded():
    from training.engine.augment import TrainAugment

    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    augment = TrainAugment.for_size(32)
    assert augment.pad == 1  # 10 px at 224, scaled
    first = augment(image, np.random.default_rng(5))
    assert first.shape == (3, 32, 32) and first.dtype == np.float32
    assert np.array_equal(first, augment(image, np.random.default_rng(5)))
    assert not all(np.array_equal(first, augment(image, np.random.default_rng(s))) for s in range(6, 10))
    reference = TrainAugment()
    assert (reference.size, reference.pad, reference.rotate_prob, reference.max_degrees) == (224, 10, 0.5, 90.0)
