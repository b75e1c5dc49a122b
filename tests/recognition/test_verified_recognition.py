"""Geometric verification on the platform: reference local features stored at ingest, verified matches in the
API with their inlier counts, the backfill command, and tenant scoping of the features."""
from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command

from galleries.calibration import calibration_is_stale
from galleries.local_features import local_features_for_embeddings
from galleries.models import Embedding, Gallery, ReferenceImage
from recognition.engine.calibration import EVIDENCE
from shitu_platform.demo_data import demo_query_photos
from shitu_platform.object_store import object_store

from tests.support.demo import import_demo_gallery, upload_file

pytestmark = pytest.mark.slow


@pytest.fixture()
def shipped_worker(celery_workers, settings):
    """A worker (and this process) on the platform's shipped default extractor, as tenants get it."""
    settings.SHITU_EXTRACTOR = ""
    return celery_workers.start("verified", {"SHITU_EXTRACTOR": ""})


def test_reference_features_are_stored_at_ingest_and_answers_carry_inliers(tenant_a, tenant_b, shipped_worker):
    client = tenant_a.key_client("admin")
    gallery = import_demo_gallery(client, "Verified")
    images = list(ReferenceImage.unscoped.filter(gallery_id=gallery, status="ready"))
    assert images and all(image.local_features_key.endswith(".rootsift") for image in images)
    assert all(object_store().exists(image.local_features_key) for image in images)

    verified = right = 0
    answers = []
    for photo in demo_query_photos():
        answer = client.post("/api/v1/recognitions/", {"image": upload_file(photo.data), "gallery": gallery},
                             format="multipart").json()
        answers.append(answer)
        assert answer["status"] == "done", answer
        assert "verify_ms" in answer["timings_ms"]
        if not answer["objects"]:
            continue
        best = answer["objects"][0]["matches"][0]
        assert "inliers" in best
        verified += (best["inliers"] or 0) >= 15
        right += best["label"] == photo.label
    assert verified >= 6, [(a["no_match"], [(o["label"], o["inliers"], o["confidence"]) for o in a["objects"]])
                           for a in answers]  # drawn products share shapes; their printed names give the keypoints
    answered = sum(bool(a["objects"]) for a in answers)
    # calibrated: what is answered is right; a shelf shot the gallery's fit is unsure of says "no match"
    assert right >= 9 and right == answered, [(a["no_match"], [(o["label"], o["confidence"]) for o in a["objects"]])
                                              for a in answers]

    # another tenant's ids give nothing, even when asked directly
    ids = list(Embedding.unscoped.filter(gallery_id=gallery).values_list("pk", flat=True))
    assert local_features_for_embeddings(tenant=tenant_b.tenant, embedding_ids=ids) == {}
    assert len(local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids)) == len(ids)


def test_backfill_command_fills_in_missing_features(tenant_a, celery_worker, capsys):
    client = tenant_a.key_client("admin")
    gallery = import_demo_gallery(client, "Verified")
    ReferenceImage.unscoped.filter(gallery_id=gallery).update(local_features_key="")
    call_command("shitu_local_features")
    assert "local features computed for" in capsys.readouterr().out
    assert not ReferenceImage.unscoped.filter(gallery_id=gallery, status="ready", local_features_key="").exists()


def _stranger_photo() -> bytes:
    """A product no gallery here holds: a printed checkerboard label on a grey card."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    pixels = np.full((420, 320, 3), 128, np.uint8)
    tiles = rng.integers(0, 2, (12, 8)).repeat(25, axis=0).repeat(25, axis=1)
    pixels[60:360, 60:260] = (tiles[:300, :200, None] * np.array([30, 200, 220])).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_calibration_is_fitted_per_gallery_and_strangers_get_no_match(tenant_a, shipped_worker):
    from galleries.models import GalleryCalibration

    client = tenant_a.key_client("admin")
    gallery = import_demo_gallery(client, "Calibrated")
    deadline = time.monotonic() + 120
    while not GalleryCalibration.unscoped.filter(gallery_id=gallery).exists():
        assert time.monotonic() < deadline, "the gallery's calibration was not fitted"
        time.sleep(0.3)
    fitted = GalleryCalibration.unscoped.get(gallery_id=gallery)
    assert fitted.images == ReferenceImage.unscoped.filter(gallery_id=gallery, status="ready").count()
    assert fitted.calibration["samples"] > 0 and 0 < fitted.calibration["threshold"] < 1
    assert fitted.calibration["evidence"] == EVIDENCE

    # A calibration fitted by older code (no `evidence`) still answers, and its first use queues one refit.
    older = {k: v for k, v in fitted.calibration.items() if k != "evidence"}
    GalleryCalibration.unscoped.filter(pk=fitted.pk).update(calibration=older)
    gallery_row = Gallery.unscoped.select_related("tenant").get(pk=gallery)
    assert calibration_is_stale(gallery=gallery_row, model_key=fitted.model_key)
    photo = demo_query_photos()[0]
    answer = client.post("/api/v1/recognitions/", {"image": upload_file(photo.data), "gallery": gallery},
                         format="multipart").json()
    assert answer["status"] == "done" and all(0.0 <= o["confidence"] <= 1.0 for o in answer["objects"]), answer
    refit_by = time.monotonic() + 90
    while GalleryCalibration.unscoped.get(pk=fitted.pk).calibration.get("evidence") != EVIDENCE:
        assert time.monotonic() < refit_by, "the older calibration was not refitted after its first use"
        time.sleep(0.3)
    assert not calibration_is_stale(gallery=gallery_row, model_key=fitted.model_key)

    answers = [client.post("/api/v1/recognitions/", {"image": upload_file(photo.data), "gallery": gallery},
                           format="multipart").json() for photo in demo_query_photos()]
    confident = [o for a in answers for o in a["objects"]]
    assert confident and all(0.0 <= o["confidence"] <= 1.0 for o in confident)
    assert sum(not a["no_match"] for a in answers) >= 9
    stranger = client.post("/api/v1/recognitions/", {"image": upload_file(_stranger_photo()), "gallery": gallery},
                           format="multipart").json()
    assert stranger["status"] == "done" and stranger["no_match"] is True and stranger["objects"] == []
