"""Geometric verification on the platform: reference local features stored at ingest, verified matches in the
API with their inlier counts, the backfill command, and tenant scoping of the features."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from galleries.local_features import local_features_for_embeddings
from galleries.models import Embedding, ReferenceImage
from shitu_platform.demo_data import demo_query_photos
from shitu_platform.object_store import object_store

from tests.support.demo import import_demo_gallery, upload_file

pytestmark = pytest.mark.slow


def test_reference_features_are_stored_at_ingest_and_answers_carry_inliers(tenant_a, tenant_b, celery_worker):
    client = tenant_a.key_client("admin")
    gallery = import_demo_gallery(client, "Verified")
    images = list(ReferenceImage.objects.filter(gallery_id=gallery, status="ready"))
    assert images and all(image.local_features_key.endswith(".rootsift") for image in images)
    assert all(object_store().exists(image.local_features_key) for image in images)

    verified = right = 0
    for photo in demo_query_photos():
        answer = client.post("/api/v1/recognitions/", {"image": upload_file(photo.data), "gallery": gallery},
                             format="multipart").json()
        assert answer["status"] == "done", answer
        assert "verify_ms" in answer["timings_ms"]
        if not answer["objects"]:
            continue
        best = answer["objects"][0]["matches"][0]
        assert "inliers" in best
        verified += (best["inliers"] or 0) >= 15
        right += best["label"] == photo.label
    assert verified >= 6, verified  # drawn products share shapes; their printed names give the keypoints
    assert right >= 10, right

    # another tenant's ids give nothing, even when asked directly
    ids = list(Embedding.objects.filter(gallery_id=gallery).values_list("pk", flat=True))
    assert local_features_for_embeddings(tenant=tenant_b.tenant, embedding_ids=ids) == {}
    assert len(local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids)) == len(ids)


def test_backfill_command_fills_in_missing_features(tenant_a, celery_worker, capsys):
    client = tenant_a.key_client("admin")
    gallery = import_demo_gallery(client, "Verified")
    ReferenceImage.objects.filter(gallery_id=gallery).update(local_features_key="")
    call_command("shitu_local_features")
    assert "local features computed for" in capsys.readouterr().out
    assert not ReferenceImage.objects.filter(gallery_id=gallery, status="ready", local_features_key="").exists()
