"""The detector's data and training loop on tiny generated composites: exact boxes, learning, resume, export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image, ImageDraw

from recognition.engine.inference import PaddleDetector
from training.data_builder import composites, sources
from training.engine.det_data import DetectionAugment, DetectionDataset, random_crop
from training.engine.det_trainer import DetTrainConfig, build_detector, dygraph_detect, train_detector
from training.engine.checkpoints import latest_checkpoint

# 96 px keeps the fixture run near 13 s on 2 cores (128 px took 45 s) and still learns: see the figures below.
TINY = dict(backbone_scale=0.25, neck_channels=32, num_convs=1, image_size=96, train_sizes=(96,),
            batch_size=8, threads=2, write_plots=False, checkpoint_every_steps=5, warmup_steps=5)


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    """Six identities, each a bold opaque shape on a transparent canvas."""
    root = tmp_path_factory.mktemp("shapes")
    colours = [(230, 30, 30), (30, 200, 60), (40, 60, 230), (240, 210, 20), (200, 40, 200), (20, 20, 20)]
    for index, colour in enumerate(colours):
        folder = root / f"shape{index}"
        folder.mkdir()
        image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        (draw.ellipse if index % 2 else draw.rectangle)((4, 4, 60, 60), fill=colour + (255,))
        image.save(folder / "a.png")
    return root


@pytest.fixture(scope="module")
def composite_set(shapes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("composites")
    identities = sources.load_folder(shapes_folder)
    composites.build_composites(identities, composites.CompositeSettings(out=out, images=48, seed=1, workers=1))
    return out


@pytest.mark.slow
def test_composite_boxes_frame_the_pasted_products(composite_set):
    records = composites.read_boxes(composite_set / composites.BOXES_NAME)
    assert len(records) == 48 and sum(len(r["boxes"]) for r in records) >= 48
    assert any(len(r["boxes"]) >= 2 for r in records) and any(len(r["boxes"]) == 1 for r in records)
    for record in records:
        image = Image.open(record["path"])
        assert image.size == (record["width"], record["height"])
        for x1, y1, x2, y2 in record["boxes"]:
            assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]
            assert min(x2 - x1, y2 - y1) >= composites.MIN_SIDE


@pytest.mark.slow
def test_composites_are_a_pure_function_of_the_seed(shapes_folder, tmp_path):
    identities = sources.load_folder(shapes_folder)
    for name, workers in (("a", 1), ("b", 2)):
        composites.build_composites(identities, composites.CompositeSettings(out=tmp_path / name, images=6, seed=5,
                                                                             workers=workers))
    assert (tmp_path / "a" / "boxes.jsonl").read_bytes() == (tmp_path / "b" / "boxes.jsonl").read_bytes()
    for path in (tmp_path / "a" / "images").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / "images" / path.name).read_bytes()


def test_a_close_up_box_covers_a_large_part_of_the_frame(shapes_folder):
    identities = sources.load_folder(shapes_folder)
    areas = []
    for index in range(10):
        image, boxes = composites.render_composite(identities, np.random.default_rng(index), seed=0, close_up=True)
        for x1, y1, x2, y2 in boxes:
            areas.append((x2 - x1) * (y2 - y1) / (image.width * image.height))
    assert areas and np.median(areas) > 0.15


def test_crop_and_flip_move_the_boxes_with_the_pixels():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 30:90] = 255
    boxes = np.array([[30, 20, 90, 60]], np.float32)
    tensor, scaled = DetectionAugment(crop_prob=0.0, flip_prob=1.0)(image, boxes, 100, np.random.default_rng(0))
    # flipped: x from 200-90=110 to 200-30=170, then scaled to 100x100 (x / 2, y * 1)
    np.testing.assert_allclose(scaled, [[55, 20, 85, 60]])
    white = tensor.mean(axis=0) > 1.0
    ys, xs = np.nonzero(white)
    assert abs(xs.min() - 55) <= 1 and abs(xs.max() + 1 - 85) <= 1 and abs(ys.min() - 20) <= 1
    cropped, kept = random_crop(image, boxes, np.random.default_rng(3), min_side=0.9)
    assert cropped.shape[0] >= 90 and len(kept) == 1 and (kept[:, 2:] <= cropped.shape[1::-1]).all()


@pytest.fixture(scope="module")
def trained(composite_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("det-run")
    dataset = DetectionDataset.from_jsonl(composite_set / composites.BOXES_NAME)
    config = DetTrainConfig(epochs=16, base_lr=0.3, out_dir=str(out), seed=0, eval_every_epochs=4, **TINY)
    return config, dataset, train_detector(config, dataset, DetectionDataset(dataset.samples[:16]))


@pytest.mark.slow
def test_training_lowers_the_loss_and_finds_the_products(trained):
    config, _dataset, result = trained
    records = [json.loads(line) for line in (Path(config.out_dir) / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("event") == "step"]
    assert len(losses) == 16 * (48 // 8)
    assert np.mean(losses[-12:]) < 0.8 * np.mean(losses[:12])  # VFL is per positive, and positives grow as boxes improve
    evals = [r for r in records if r.get("event") == "eval"]
    assert len(evals) == 4, evals
    first, last = evals[0], evals[-1]
    figures = [(round(e["mAP@0.5"], 3), round(e["recall"], 3)) for e in evals]
    # observed (mAP@0.5, recall) at steps 24/48/72/96, 2 threads: (0.039, 0.054) (0.015, 0.108) (0.045, 0.216)
    # (0.102, 0.297); 1 thread: (0.017, 0.027) (0.023, 0.0) (0.106, 0.27) (0.093, 0.189)
    assert first["recall"] < 0.1, figures                # after 24 steps it finds next to nothing
    # The best of the later evaluations: on 37 boxes one box is 0.027 of recall, and the last eval can dip by a
    # box or two (seen in CI: 0.216 at step 72, 0.162 at step 96).
    assert max(e["recall"] for e in evals[1:]) > max(0.15, 3 * first["recall"]), figures
    assert last["mAP@0.5"] > 2 * first["mAP@0.5"], figures
    assert result["status"] == "completed"


@pytest.mark.slow
def test_exported_detector_loads_like_an_official_archive_and_matches_dygraph(trained, composite_set):
    config, dataset, result = trained
    detector = PaddleDetector.from_dir(result["model_dir"], threads=1)
    assert detector.input_size == (96, 96) and detector.labels == ("foreground",)
    model = build_detector(config)
    model.set_state_dict(paddle.load(str(latest_checkpoint(config.out_dir).path / "ema.pdparams")))
    model.eval()
    image, _boxes = dataset.load(0)
    reference = dygraph_detect(model, config.image_size)(image)
    boxes = detector.detect(image)
    assert len(boxes) == len(reference) > 0
    got = np.array([[b.score, b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes])
    np.testing.assert_allclose(got[:3], reference[:3], atol=1e-3)


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(composite_set, tmp_path):
    dataset = DetectionDataset.from_jsonl(composite_set / composites.BOXES_NAME)
    settings = dict(epochs=4, base_lr=0.05, seed=2, eval_every_epochs=100, **TINY)
    straight = DetTrainConfig(out_dir=str(tmp_path / "straight"), max_steps=8, **settings)
    train_detector(straight, dataset)
    interrupted = DetTrainConfig(out_dir=str(tmp_path / "resumed"), max_steps=6, **settings)
    train_detector(interrupted, dataset)  # stops at 6 as if killed after its checkpoint (the periodic one was at 5)
    resumed = DetTrainConfig(out_dir=str(tmp_path / "resumed"), max_steps=8, **settings)
    result = train_detector(resumed, dataset)
    assert result["step"] == 8
    first = paddle.load(str(latest_checkpoint(straight.out_dir).path / "ema.pdparams"))
    second = paddle.load(str(latest_checkpoint(resumed.out_dir).path / "ema.pdparams"))
    for key in first:
        np.testing.assert_allclose(np.asarray(first[key]), np.asarray(second[key]), atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused(composite_set, tmp_path):
    dataset = DetectionDataset.from_jsonl(composite_set / composites.BOXES_NAME)
    train_detector(DetTrainConfig(out_dir=str(tmp_path), epochs=2, max_steps=2, **TINY), dataset)
    with pytest.raises(ValueError, match="base_lr"):
        train_detector(DetTrainConfig(out_dir=str(tmp_path), epochs=2, max_steps=4, base_lr=0.5, **TINY), dataset)
