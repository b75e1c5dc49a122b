"""Crop-retrieval and target metrics: the main-object crop wins when the detector finds the product."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.types import Box
from training.data_builder.shelf import build
from training.engine.cli import main as cli_main
from training.engine.crop_eval import crop_retrieval, render_crop_report
from training.engine.det_eval import evaluate_targets
from training.engine.dataset import ImageDataset

COLOURS = [(220, 30, 30), (30, 180, 60), (40, 60, 220), (240, 200, 20)]
SHELF_COLOURS = np.array([(90, 90, 90), (200, 200, 200), (120, 60, 20), (20, 100, 110), (160, 120, 200)])


def _photos():
    """Products at 12 % of the frame, near the centre, over busy two-colour backgrounds that photos share."""
    rng = np.random.default_rng(1)
    pairs, boxes = [], []
    for product, colour in enumerate(COLOURS):
        for _ in range(3):
            palette = SHELF_COLOURS[rng.choice(len(SHELF_COLOURS), 2, replace=False)]
            image = palette[rng.integers(0, 2, (16, 16))].repeat(10, axis=0).repeat(10, axis=1).astype(np.uint8)
            x, y = (int(v) for v in 45 + rng.integers(0, 20, 2))
            image[y:y + 56, x:x + 56] = colour
            pairs.append((image, f"product {product}"))
            boxes.append(Box(x, y, x + 56, y + 56, score=0.8))
    return ImageDataset.from_pairs(pairs), boxes


class KnownBoxes:
    """A detector that finds the product, and a confident small fragment in the corner that is not it."""

    def __init__(self, dataset, boxes):
        self.by_photo = {dataset.load(i).tobytes(): box for i, box in enumerate(boxes)}

    def detect(self, image):
        return [Box(0, 0, 20, 20, score=0.95), self.by_photo[image.tobytes()]]


def test_main_object_crop_beats_the_whole_photo_and_the_best_box():
    dataset, boxes = _photos()
    report = crop_retrieval(KnownBoxes(dataset, boxes), ColourHistogramExtractor(), dataset)
    plain = report["plain"]
    assert plain["main_object"]["recall@1"] == 1.0
    assert plain["whole_image"]["recall@1"] < 0.8  # the background dominates the whole photo
    assert plain["best_box"]["recall@1"] < plain["main_object"]["recall@1"]  # the confident fragment
    assert plain["main_object"]["queries"] == 12 and plain["main_object_share"] == 1.0
    table = render_crop_report(report)
    assert "plain" in table and "main-whole" in table


def test_targets_found_and_chosen():
    image = np.zeros((200, 300, 3), np.uint8)
    truth = np.array([[100, 50, 200, 150], [0, 0, 40, 40]], np.float32)
    exact = lambda _: np.array([[0.9, 100, 50, 200, 150], [0.95, 0, 0, 40, 40]], np.float32)  # noqa: E731
    assert evaluate_targets(exact, [(image, truth, 0)]) == {"scenes": 1, "target_found": 1.0,
                                                            "main_object_is_target": 1.0}
    elsewhere = lambda _: np.array([[0.9, 0, 0, 40, 40]], np.float32)  # noqa: E731
    assert evaluate_targets(elsewhere, [(image, truth, 0)])["target_found"] == 0.0
    assert evaluate_targets(elsewhere, [(image, truth, -1)])["scenes"] == 0  # unmarked scenes do not count


@pytest.mark.slow
def test_eval_det_reports_targets_on_a_tiny_shelf_set(tmp_path, capsys):
    root = tmp_path / "photos"
    (root / "img").mkdir(parents=True)
    lines = []
    for number, colour in enumerate(COLOURS):
        for view in range(2):
            photo = np.full((200, 120, 3), colour, np.uint8)
            photo[60:140, 20:100] = 255 - np.array(colour, np.uint8)
            Image.fromarray(photo).save(root / "img" / f"{number}-{view}.png")
            lines.append(f"img/{number}-{view}.png\tproduct {number}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    build(root / "labels.txt", tmp_path / "shelf", products=None, seed=0, show_progress=False)
    detector = sorted((Path(__file__).resolve().parents[2] / "models" / "detector").iterdir())[-1]
    assert cli_main(["eval-det", "--model", str(detector), "--boxes", str(tmp_path / "shelf" / "boxes.jsonl"),
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["composites"]
    assert report["images"] == report["scenes"] == 8
    assert 0.0 <= report["target_found"] <= 1.0 and 0.0 <= report["main_object_is_target"] <= 1.0
    assert report["boxes"] >= 16  # every scene has its target and at least one neighbour
