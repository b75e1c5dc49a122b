"""The ImageNet-started detector: Lite0 maps at the strides PicoDet wants, cached maps that resume, a neck and
head that learn from them, and an export that Paddle Inference runs exactly like the dygraph network."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image

from recognition.engine.inference import PaddleDetector
from recognition.engine.nets.efficientnet_lite import EfficientNetLite, lite0_blocks
from recognition.engine.nets.lite_det import LiteDetBackbone, stage_ends
from training.engine.det_data import DetectionDataset
from training.engine.det_head_training import DetHeadConfig, build_lite_detector, cache_maps, train_det_head, view
from training.engine.det_trainer import dygraph_detect

PALETTE = np.array([(230, 30, 30), (30, 200, 60), (40, 60, 230), (240, 210, 20), (200, 40, 200), (10, 10, 10)],
                   np.uint8)
TINY = dict(image_size=128, views=2, neck_channels=32, num_convs=1, batch_size=8, warmup_steps=4, threads=2)


@pytest.mark.slow
def test_lite0_maps_end_the_40_112_320_wide_stages():
    blocks = lite0_blocks()
    ends = stage_ends(blocks, (8, 16, 32))
    assert [blocks[i].out_channels for i in ends] == [40, 112, 320]
    backbone = LiteDetBackbone(EfficientNetLite(blocks), (16, 32))
    backbone.eval()
    with paddle.no_grad():
        maps = backbone(paddle.zeros([1, 3, 320, 256]))
    assert [tuple(m.shape) for m in maps] == [(1, 112, 20, 16), (1, 320, 10, 8)]
    with pytest.raises(ValueError, match="no stride"):
        stage_ends(blocks, (64,))


def test_a_mirrored_view_moves_its_boxes_with_the_pixels():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 30:90] = 255
    config = DetHeadConfig(image_size=64)
    pixels, boxes = view(image, np.array([[30, 20, 90, 60]], np.float32), 0, 1, config)
    # mirrored: x from 200 - 90 = 110 to 170, then scaled to 64 x 64
    np.testing.assert_allclose(boxes, [[110 * 0.32, 20 * 0.64, 170 * 0.32, 60 * 0.64]], atol=1e-4)
    ys, xs = np.nonzero(pixels.mean(axis=2) > 127)
    assert abs(xs.min() - 110 * 0.32) <= 1.5 and abs(xs.max() + 1 - 170 * 0.32) <= 1.5
    assert abs(ys.min() - 20 * 0.64) <= 1.5


@pytest.fixture(scope="module")
def boxes_file(tmp_path_factory) -> Path:
    """24 photos of grey noise, each with one or two plain saturated rectangles and their exact boxes."""
    root = tmp_path_factory.mktemp("det-head-data")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for index in range(24):
        image = rng.integers(90, 160, (160, 160, 3), dtype=np.uint8)
        boxes = []
        for _ in range(1 + index % 2):
            w, h = (int(v) for v in rng.integers(40, 90, 2))
            x, y = int(rng.integers(0, 160 - w)), int(rng.integers(0, 160 - h))
            image[y:y + h, x:x + w] = PALETTE[int(rng.integers(len(PALETTE)))]
            boxes.append([x, y, x + w, y + h])
        Image.fromarray(image).save(root / "images" / f"{index:02d}.png")
        lines.append(json.dumps({"file": f"images/{index:02d}.png", "width": 160, "height": 160, "boxes": boxes}))
    (root / "boxes.jsonl").write_text("\n".join(lines) + "\n")
    return root / "boxes.jsonl"


@pytest.fixture(scope="module")
def maps_dir(boxes_file, tmp_path_factory) -> Path:
    """The frozen backbone's maps of every view, computed once for the module: the costly half of both tests below."""
    cache_dir = tmp_path_factory.mktemp("det-maps")
    cache_maps([DetectionDataset.from_jsonl(boxes_file)], DetHeadConfig(**TINY), cache_dir, chunk=10)
    return cache_dir


class NoBackbone:
    @property
    def backbone(self):
        raise AssertionError("a cached chunk was computed again")


@pytest.mark.slow
def test_cached_maps_resume_without_running_the_backbone_again(boxes_file, maps_dir, tmp_path):
    dataset = DetectionDataset.from_jsonl(boxes_file)
    config = DetHeadConfig(**TINY)
    shutil.copytree(maps_dir, tmp_path, dirs_exist_ok=True)
    first = cache_maps([dataset], config, tmp_path, chunk=10, model=NoBackbone())   # every chunk is there
    assert len(first) == 24 * 2 and [tuple(level.shape[1:]) for level in first.levels] == [(112, 8, 8), (320, 4, 4)]
    assert all(len(b) == 1 + (i // 2) % 2 for i, b in enumerate(first.boxes))   # views of one photo share its boxes
    (next(tmp_path.glob("det-maps-*")) / "chunk-000010.npz").unlink()             # as if killed mid-way
    with pytest.raises(AssertionError, match="computed again"):
        cache_maps([dataset], config, tmp_path, chunk=10, model=NoBackbone())
    again = cache_maps([dataset], config, tmp_path, chunk=10)   # recomputes the lost chunk only
    for old, new in zip(first.levels, again.levels):
        np.testing.assert_allclose(old.astype(np.float32), new.astype(np.float32), atol=2e-2)


@pytest.mark.slow
def test_neck_and_head_learn_and_the_export_runs_like_dygraph(boxes_file, maps_dir, tmp_path):
    dataset = DetectionDataset.from_jsonl(boxes_file)
    config = DetHeadConfig(epochs=12, base_lr=0.1, **TINY)
    model = build_lite_detector(config)
    frozen_before = {k: v.numpy().copy() for k, v in model.backbone.state_dict().items()}
    cache = cache_maps([dataset], config, maps_dir, model=model, chunk=10)   # the module's maps: same backbone
    samples = [dataset.load(i) for i in range(len(dataset))]
    result = train_det_head(cache, config, tmp_path / "run", model=model, eval_samples=samples)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 12 * (48 // 8)
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])
    assert result["eval"]["recall"] > 0.5, result["eval"]       # finds most of the rectangles it trained on
    for key, value in model.backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), frozen_before[key])   # the ImageNet backbone stays as it was
    detector = PaddleDetector.from_dir(result["model_dir"], threads=1)
    manifest = json.loads((Path(result["model_dir"]) / "manifest.json").read_text())
    assert detector.input_size == (128, 128) and manifest["extra"]["architecture"] == "picodet-efficientnet-lite"
    image, _ = samples[0]
    reference = dygraph_detect(model, config.image_size)(image)
    got = np.array([[b.score, b.xmin, b.ymin, b.xmax, b.ymax] for b in detector.detect(image)])
    assert len(got) > 0
    np.testing.assert_allclose(got[:3], reference[:3], atol=2e-2)
