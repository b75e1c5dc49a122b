"""Whole-pipeline recall: equals the extractor's leave-one-out without boxes; good boxes raise it."""
import numpy as np
import pytest

from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.types import Box
from training.engine.dataset import ImageDataset
from training.engine.evaluate import extract_features, leave_one_out
from training.engine.pipeline_eval import pipeline_recall

PRODUCT_COLOURS = [(220, 30, 30), (30, 180, 60), (40, 60, 220), (240, 200, 20)]
PRODUCT_SIDE = 34  # 7 % of the 128 px photo: big enough to be a main object (main_object.MainObjectRule.min_area)
BACKGROUND_COLOURS = np.array([(90, 90, 90), (200, 200, 200), (120, 60, 20), (20, 100, 110), (160, 120, 200)])


def _photos(seed: int = 0):
    """Small products of a known colour at a known box, on large backgrounds drawn from colours all photos share."""
    rng = np.random.default_rng(seed)
    pairs, boxes = [], []
    for product, colour in enumerate(PRODUCT_COLOURS):
        for _ in range(3):
            palette = BACKGROUND_COLOURS[rng.choice(len(BACKGROUND_COLOURS), 2, replace=False)]
            image = palette[rng.integers(0, 2, (16, 16))].repeat(8, axis=0).repeat(8, axis=1).astype(np.uint8)
            x, y = (int(v) for v in rng.integers(0, 128 - PRODUCT_SIDE, 2))
            image[y:y + PRODUCT_SIDE, x:x + PRODUCT_SIDE] = colour
            pairs.append((image, f"product {product}"))
            boxes.append(Box(x, y, x + PRODUCT_SIDE, y + PRODUCT_SIDE, score=0.9))
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


# --- the calibrated, verified pipeline (evaluate_pipeline, eval --pipeline) ---------------------------------------

import json  # noqa: E402

import cv2  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from PIL import Image  # noqa: E402

from training.engine.pipeline_eval import read_scenes, scene_is_right  # noqa: E402


def test_scenes_file_and_matching(tmp_path):
    tsv = tmp_path / "scenes" / "scenes.tsv"
    tsv.parent.mkdir()
    tsv.write_text("# photo<TAB>expected\n\na.jpg\tcola | cola zero ; tea\nsub/b.jpg\ttea;tea\n", encoding="utf-8")
    first, second = read_scenes(tsv)
    assert first.path == tsv.parent / "a.jpg" and first.expected == (frozenset({"cola", "cola zero"}), frozenset({"tea"}))
    assert second.path == tsv.parent / "sub" / "b.jpg" and len(second.expected) == 2
    assert scene_is_right(first.expected, ["tea", "cola zero", "water"])          # extras are fine
    assert not scene_is_right(first.expected, ["tea", "water"])
    assert not scene_is_right(second.expected, ["tea"])                           # two cans need two objects
    assert scene_is_right(second.expected, ["tea", "cola", "tea"])
    # one object may not serve two groups, even when a greedy pick would take the wrong one first
    assert scene_is_right((frozenset({"a", "b"}), frozenset({"a"})), ["a", "b"])
    (tmp_path / "bad.tsv").write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError):
        read_scenes(tmp_path / "bad.tsv")


def _package(seed: int) -> np.ndarray:
    from tests.engine.test_verify import textured_image

    return textured_image(seed)


def _unlabelled_package(seed: int) -> np.ndarray:
    """A product printed differently from the gallery's (soft blobs, no lettering): shares no glyphs with them."""
    rng = np.random.default_rng(seed)
    image = np.full((240, 320, 3), rng.integers(60, 200, 3), dtype=np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, 320)), int(rng.integers(0, 240)))
        axes = (int(rng.integers(10, 70)), int(rng.integers(10, 50)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    return cv2.GaussianBlur(image, (0, 0), 2.0)


def _view(package: np.ndarray, rng: np.random.Generator, backdrop_seed: int) -> np.ndarray:
    """The package rotated a little and shrunk into a plain, noisy 480x360 photo (a gallery or query shot)."""
    h = np.vstack([cv2.getRotationMatrix2D((160, 120), rng.uniform(-10, 10), rng.uniform(0.75, 1.0)), [0, 0, 1]])
    h[:2, 2] += rng.uniform(20, 60, 2)
    backdrop = np.random.default_rng(backdrop_seed)
    photo = np.full((360, 480, 3), backdrop.integers(90, 170, 3), dtype=np.uint8)
    warped = cv2.warpPerspective(package, h, (480, 360))
    inside = cv2.warpPerspective(np.full(package.shape[:2], 255, np.uint8), h, (480, 360)) > 0
    photo = np.where(inside[..., None], warped, photo)
    return np.clip(photo.astype(int) + backdrop.integers(-6, 7, photo.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def drawn_photos(tmp_path):
    """6 drawn products x 4 photos in a gallery folder, 2 differently printed products as unknown photos, 2 scenes."""
    rng = np.random.default_rng(11)
    root = tmp_path / "gallery"
    lines, unknown = [], []
    for product in range(8):
        package = _package(200 + product) if product < 6 else _unlabelled_package(200 + product)
        folder = root / f"p{product}"
        folder.mkdir(parents=True)
        for photo in range(4 if product < 6 else 2):
            Image.fromarray(_view(package, rng, 500 + 10 * product + photo)).save(folder / f"{photo}.png")
            (lines if product < 6 else unknown).append(f"p{product}/{photo}.png\tproduct {product}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "unknown.txt").write_text("\n".join(unknown) + "\n", encoding="utf-8")
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.fromarray(_view(_package(200), rng, 900)).save(scenes / "one.png")
    Image.fromarray(_view(_package(201), rng, 901)).save(scenes / "two.png")
    # the second expects two products: without a detector only the whole photo is recognised, so it cannot be right
    (scenes / "scenes.tsv").write_text("one.png\tproduct 0|product 9\ntwo.png\tproduct 1;product 2\n", encoding="utf-8")
    return root, tmp_path / "unknown.txt", scenes / "scenes.tsv"


@pytest.mark.slow
def test_shitu_eval_pipeline_json_on_drawn_products(drawn_photos, capsys):
    root, unknown, scenes = drawn_photos
    call_command("shitu_eval", "--gallery", str(root), "--baseline", "colour-histogram", "--pipeline",
                 "--detector", "none", "--unknown", str(unknown), "--scenes", str(scenes), "--json", "--no-progress")
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "pipeline" and report["detector"] == "none"
    assert report["images"] == 24 and report["identities"] == 6 and report["queries"] == 24
    assert {"recall@1", "recall@5", "mAP", "unknown_rejected", "known_precision", "known_coverage", "scenes_right",
            "scenes_total", "ms_p50", "ms_p95"} <= set(report)
    assert report["calibration_source"] == "gallery" and report["calibration"]["samples"] == 48
    assert report["recall@1"] >= 0.9 and report["recall@5"] >= report["recall@1"] and report["mAP"] is None
    assert report["known_coverage"] >= 0.9 and report["known_precision"] == 1.0
    assert report["unknown_photos"] == 4 and report["unknown_rejected"] == 1.0
    assert report["scenes_total"] == 2 and report["scenes_right"] == 1
    assert 0 < report["ms_p50"] <= report["ms_p95"]


@pytest.mark.slow
def test_pipeline_options_are_checked(drawn_photos, tmp_path):
    root, unknown, _ = drawn_photos
    with pytest.raises(CommandError, match="--pipeline"):
        call_command("shitu_eval", "--gallery", str(root), "--baseline", "colour-histogram", "--unknown", str(unknown),
                     "--no-progress")
    with pytest.raises(CommandError, match="split"):
        call_command("shitu_eval", "--gallery", str(root), "--baseline", "colour-histogram", "--pipeline",
                     "--detector", "none", "--mode", "split", "--no-progress")
    clash = tmp_path / "clash.txt"
    clash.write_text("p0/0.png\tproduct 0\n", encoding="utf-8")  # a gallery product is not an unknown one
    with pytest.raises(CommandError, match="in the gallery"):
        call_command("shitu_eval", "--gallery", str(root), "--baseline", "colour-histogram", "--pipeline",
                     "--detector", "none", "--unknown", str(clash), "--no-progress")
