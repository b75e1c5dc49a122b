"""Training engine end to end on generated images with a small PPLCNetV2 (scale 0.25, depth 1 per stage).

Learning, kill-and-resume equality, cancel, export round trip and fine-tuning start points.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from recognition.engine.inference import PaddleExtractor
from training.engine.dataset import ImageDataset
from training.engine.evaluate import evaluate_extractor, extract_features
from training.engine.checkpoints import latest_checkpoint
from training.engine.extractor_net import FINAL_WEIGHTS_NAME, ModelExtractor, build_model, load_initial_weights
from training.engine.runs import read_log
from training.engine.trainer import TrainConfig, train

SIZE = 64
SMALL_NET = dict(image_size=SIZE, feature_dim=64, backbone_scale=0.25, backbone_depths=(1, 1, 1, 1),
                 threads=2, write_plots=False)


def make_image(identity: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Identity = a pattern (rotation-robust, as training rotates up to 90 degrees) in its own
    jittered two-colour palette; position, colour order and noise vary per image."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + rng.uniform(-4, 4, (2, 1, 1))) / size
    radius = np.hypot(xx - 0.5, yy - 0.5)
    patterns = [
        np.sin(2 * np.pi * 3 * yy) > 0,                              # wide stripes
        np.sin(2 * np.pi * 8 * yy) > 0,                              # fine stripes
        (np.floor(xx * 4) + np.floor(yy * 4)) % 2 == 0,              # checkerboard
        np.sin(2 * np.pi * 5 * radius) > 0,                          # rings
        np.hypot((xx * 5) % 1 - 0.5, (yy * 5) % 1 - 0.5) < 0.25,     # dots
        radius < 0.3,                                                # one disc
    ]
    palette = np.random.default_rng(identity + 100).integers(30, 226, (2, 3))
    first, second = palette + rng.integers(-40, 41, (2, 3))
    if rng.random() < 0.5:
        first, second = second, first
    image = np.where(patterns[identity][..., None], first, second).astype(np.float32)
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(per_identity: int, seed: int, identities: int = 6) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset.from_pairs((make_image(i, rng), f"product-{i}")
                                   for i in range(identities) for _ in range(per_identity))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """90 steps (30 epochs x 3) of the full recipe on 36 generated images, evaluated on 30 others."""
    out_dir = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=30, p=3, k=4, base_lr=0.02, warmup_epochs=1, seed=0,
                         checkpoint_every_steps=40, eval_every_epochs=10, out_dir=str(out_dir),
                         **{**SMALL_NET, "write_plots": True})
    train_set, eval_set = make_dataset(6, seed=0), make_dataset(5, seed=1)
    paddle.seed(config.seed)  # the trainer initialises the same way
    untrained = evaluate_extractor(ModelExtractor(build_model(config, 6), SIZE), eval_set)
    fractions: list[float] = []
    result = train(config, train_set, {"held-out": eval_set}, progress=lambda f, info: fractions.append(f))
    return config, result, untrained, eval_set, fractions


@pytest.mark.slow
def test_training_lowers_the_loss_and_raises_recall(trained_run):
    config, result, untrained, _, fractions = trained_run
    assert result.status == "completed" and result.step == result.total_steps == 90
    steps = [r for r in read_log(result.log_path) if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 91))
    assert set(steps[0]) >= {"step", "epoch", "loss", "ce", "triplet", "lr", "step_seconds"}
    first, last = np.mean([r["loss"] for r in steps[:15]]), np.mean([r["loss"] for r in steps[-15:]])
    assert last < first - 0.4, (first, last)
    final = result.evals[-1]
    assert [e["epoch"] for e in result.evals] == [10, 20, 30]
    # observed (2 threads): recall@1 0.60 -> 0.80, mAP 0.45 -> 0.81; 1 thread: 0.60 -> 0.80, 0.45 -> 0.71
    assert final["recall@1"] >= untrained["recall@1"] + 0.1, (untrained, final)
    assert final["mAP"] >= untrained["mAP"] + 0.15, (untrained, final)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert (result.out_dir / "losses.png").stat().st_size > 0
    assert (result.out_dir / "metrics.png").stat().st_size > 0


@pytest.mark.slow
def test_export_round_trip(trained_run):
    config, result, _, eval_set, _ = trained_run
    manifest = json.loads((result.model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "extractor" and manifest["feature_dim"] == 64
    assert manifest["input_size"] == [SIZE, SIZE] and manifest["extra"]["training"]["steps"] == 90
    exported = PaddleExtractor.from_dir(result.model_dir, threads=2)
    in_memory = build_model(config, 6)
    in_memory.set_state_dict(paddle.load(str(result.out_dir / FINAL_WEIGHTS_NAME)))
    ours = extract_features(ModelExtractor(in_memory, SIZE), eval_set)
    theirs = extract_features(exported, eval_set)
    assert theirs.shape == (30, 64)
    assert np.abs(ours - theirs).max() < 1e-4  # fused (re-parameterised) program vs training graph


@pytest.mark.slow
def test_restart_after_completion_does_not_train_again(trained_run):
    config, result, _, _, _ = trained_run
    again = train(config, make_dataset(6, seed=0))
    assert again.status == "completed" and again.model_dir == result.model_dir
    assert len([r for r in read_log(result.log_path) if r["event"] == "step"]) == 90


def _params(run_dir: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in paddle.load(str(run_dir / FINAL_WEIGHTS_NAME)).items()}


class Crash(Exception):
    pass


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    # 6 ids x 4 images, P=3 K=2 -> 4 steps per epoch, 8 steps; checkpoints at 3, 4 (epoch end), 6, 8
    data = make_dataset(4, seed=2)
    base = dict(epochs=2, p=3, k=2, base_lr=0.02, warmup_epochs=1, seed=7, checkpoint_every_steps=3,
                **SMALL_NET)
    reference = train(TrainConfig(out_dir=str(tmp_path / "straight"), **base), data)
    assert reference.step == 8

    config = TrainConfig(out_dir=str(tmp_path / "killed"), **base)

    def crash_at_5(fraction, info):
        if info.get("phase") == "train" and info["step"] == 5:
            raise Crash()  # like a kill: step 5 is done but not checkpointed

    with pytest.raises(Crash):
        train(config, data, progress=crash_at_5)
    assert latest_checkpoint(config.out_dir).step == 4

    seen: list[int] = []

    def cancel_after_6():
        return bool(seen) and seen[-1] >= 6

    stopped = train(config, data, progress=lambda f, info: seen.append(info["step"]), cancel=cancel_after_6)
    assert stopped.status == "cancelled" and stopped.resumed_from_step == 4 and stopped.step == 6
    assert seen[0] == 5  # the step counter continues after the checkpoint, step 5 is redone
    assert latest_checkpoint(config.out_dir).step == 6

    finished = train(config, data)
    assert finished.status == "completed" and finished.resumed_from_step == 6 and finished.step == 8
    steps = [r["step"] for r in read_log(finished.log_path) if r["event"] == "step"]
    assert steps == list(range(1, 9))  # the crashed step 5 appears once
    ours, theirs = _params(finished.out_dir), _params(reference.out_dir)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-5, err_msg=name)
    assert len(list((finished.out_dir / "checkpoints").glob("step-*"))) <= 2

    other = TrainConfig(out_dir=str(tmp_path / "other"), **base)
    assert train(other, data, cancel=lambda: True).step == 0  # cancelled at once: a step-0 checkpoint
    with pytest.raises(ValueError, match="different"):
        train(TrainConfig(out_dir=other.out_dir, **{**base, "seed": 8}), data)


@pytest.mark.slow
def test_fine_tuning_start_points(trained_run, tmp_path):
    config, result, _, _, _ = trained_run
    # a new product set (4 classes): backbone + neck load, the 6-class head does not
    model = build_model(config, 4)
    report = load_initial_weights(model, result.out_dir)
    assert "head.fc.weight" in report["skipped"] and not report["missing"]
    assert any(k.startswith("backbone.") for k in report["loaded"])
    with pytest.raises(ValueError, match="exported inference model"):
        load_initial_weights(model, result.model_dir)
    tuned = train(TrainConfig(out_dir=str(tmp_path / "tuned"), epochs=1, p=2, k=2, max_steps=2,
                              init_from=str(result.out_dir), **SMALL_NET),
                  make_dataset(2, seed=3, identities=4))
    assert tuned.status == "completed" and tuned.step == 2
    start = [r for r in read_log(tuned.log_path) if r["event"] == "start"][0]
    assert start["init_loaded"] > 0


@pytest.mark.slow
def test_cli_train_from_a_label_file(tmp_path):
    from PIL import Image

    from training.engine.cli import main

    rng = np.random.default_rng(4)
    lines = []
    for identity in range(3):
        for n in range(2):
            relative = f"p{identity}/{n}.png"
            (tmp_path / "data" / f"p{identity}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(make_image(identity, rng)).save(tmp_path / "data" / relative)
            lines.append(f"{relative}\tproduct {identity}")
    (tmp_path / "data" / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {**SMALL_NET, "backbone_depths": [1, 1, 1, 1], "P": 2, "K": 2, "epochs": 1, "base_lr": 0.01}
    (tmp_path / "run.yaml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    code = main(["train", "--config", str(tmp_path / "run.yaml"), "--data", str(tmp_path / "data" / "labels.txt"),
                 "--out", str(tmp_path / "out"), "--max-steps", "2"])
    assert code == 0
    assert (tmp_path / "out" / "model" / "inference.json").exists()
    assert json.loads((tmp_path / "out" / "result.json").read_text())["step"] == 2


@pytest.mark.slow
def test_export_run_fuses_the_colour_histogram_and_can_be_fine_tuned(trained_run, tmp_path):
    from training.engine.network_files import TRAIN_CONFIG_NAME, TRAIN_WEIGHTS_NAME
    from training.engine.trainer import export_run

    config, result, _, eval_set, _ = trained_run
    out = tmp_path / "fused"
    manifest = export_run(result.out_dir, out, colour_weight=0.4, name="fused-test", version="2")
    assert manifest.feature_dim == 64 + 256 and manifest.extra["fusion"]["colour_histogram"]["weight"] == 0.4
    network = json.loads((out / TRAIN_CONFIG_NAME).read_text())
    assert network == {"image_size": SIZE, "backbone_scale": 0.25, "backbone_depths": [1, 1, 1, 1], "feature_dim": 64,
                       "colour_weight": 0.4, "colour_dim": 256}
    fused = PaddleExtractor.from_dir(out, threads=2)
    plain = PaddleExtractor.from_dir(result.model_dir, threads=2)
    fused_features, plain_features = extract_features(fused, eval_set), extract_features(plain, eval_set)
    assert np.allclose(np.linalg.norm(fused_features, axis=1), 1.0, atol=1e-5)
    # cosine of fused vectors = 0.4 x colour cosine + 0.6 x learned cosine, the learned part being the plain model's
    learned = fused_features[:, 256:] / np.sqrt(0.6)
    assert np.abs(learned - plain_features).max() < 1e-4
    colour = fused_features[:, :256] / np.sqrt(0.4)
    expected = 0.4 * colour @ colour.T + 0.6 * plain_features @ plain_features.T
    assert np.abs(fused_features @ fused_features.T - expected).max() < 1e-4
    # a fine-tune of the fused model starts from its training weights, with the same network
    tuned_config = TrainConfig(out_dir=str(tmp_path / "tuned"), epochs=1, p=2, k=2, max_steps=2,
                               init_from=str(out / TRAIN_WEIGHTS_NAME), **{**SMALL_NET, **network,
                                                                           "backbone_depths": (1, 1, 1, 1)})
    tuned = train(tuned_config, make_dataset(2, seed=3, identities=4))
    assert tuned.status == "completed" and tuned.manifest.feature_dim == 64 + 256
    assert [r for r in read_log(tuned.log_path) if r["event"] == "start"][0]["init_loaded"] > 0


@pytest.mark.slow
def test_in_graph_colour_histogram_is_the_baseline_descriptor():
    from recognition.engine.baseline import ColourHistogramExtractor
    from recognition.engine.nets import ColourHistogram
    from recognition.engine.preprocess import RecognitionPreprocess

    rng = np.random.default_rng(0)
    images = [make_image(identity, rng) for identity in range(6)]
    batch = RecognitionPreprocess(size=(SIZE, SIZE))(images)
    ours = ColourHistogram(out_dim=256, stride=1)(paddle.to_tensor(batch)).numpy()
    resized = [np.asarray(image) for image in images]  # already SIZE x SIZE: the same pixels
    reference = ColourHistogramExtractor(feature_dim=256).extract(resized)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
