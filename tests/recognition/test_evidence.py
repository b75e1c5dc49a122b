"""Matched-keypoint evidence on the platform: stored compactly with the object, drawn side by side, tenant-scoped."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from PIL import Image

from galleries.models import Embedding, Gallery, Product, ReferenceImage
from recognition.engine.local_features import extract_local_features
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.search import VectorIndex
from recognition.evidence import GAP, MARGIN, MAX_PAIRS, PANEL_HEIGHT
from recognition.models import DetectedObject, MatchReview, Recognition
from recognition.services import _store_objects
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key
from tests.engine.test_pipeline import ConstantExtractor
from tests.engine.test_verify import scene_box, textured_image, warped_into_scene

pytestmark = pytest.mark.django_db


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@dataclass
class Verified:
    recognition: Recognition
    verified: DetectedObject  # the photographed product, verified by its keypoints
    unverified: DetectedObject  # a second box on plain background: nothing to draw
    reference: np.ndarray
    box: list[float]


def _verified_recognition(world) -> Verified:
    """The real pipeline over a photo of a textured product, its objects stored as the worker stores them."""
    tenant = world.tenant
    gallery = Gallery(tenant=tenant, name="Evidence aisle")
    gallery.save()
    reference = textured_image(1)
    embeddings = {}
    for label, pixels in (("Printed Box", reference), ("Look-alike", textured_image(2))):
        product = Product(tenant=tenant, gallery=gallery, label=label)
        product.save()
        data = _jpeg(pixels)
        checksum = hashlib.sha256(data).hexdigest()
        key = tenant_key(tenant.pk, "test-refs", checksum)
        object_store().put(key, data)
        image = ReferenceImage(tenant=tenant, gallery=gallery, product=product, object_key=key, checksum=checksum,
                               size_bytes=len(data), width=pixels.shape[1], height=pixels.shape[0], status="ready")
        image.save()
        embedding = Embedding(tenant=tenant, gallery=gallery, reference_image=image, model_key="test@1",
                              vector=[1.0] + [0.0] * 511, box=None)
        embedding.save()
        embeddings[label] = (embedding.pk, extract_local_features(pixels))
    scene = warped_into_scene(reference)
    scene[300:350, 10:60] = 235  # a plain patch: a detection there has no keypoints to verify
    box = replace(scene_box(reference), score=0.9)
    plain = replace(box, xmin=10, ymin=300, xmax=60, ymax=350, score=0.8)
    (right, _), (wrong, _) = embeddings["Printed Box"], embeddings["Look-alike"]
    index = VectorIndex(ConstantExtractor.feature_dim, "Flat")  # the look-alike has the higher cosine
    index.build(np.array([wrong, right], dtype=np.int64), np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0]], dtype=np.float32))
    pipeline = RecognitionPipeline(GivenBoxDetector([box, plain]), ConstantExtractor(), index,
                                   {item: label for label, (item, _) in embeddings.items()},
                                   local_features={item: features for item, features in embeddings.values()})
    params = PipelineParams(add_whole_image=False, score_threshold=0.0, nms_iou=0.5)
    objects = pipeline.recognize(scene, params)
    assert [o.label for o in objects] == ["Printed Box", "Look-alike"] and objects[1].evidence is None

    key = tenant_key(tenant.pk, "test-queries", "evidence-scene")
    object_store().put(key, _jpeg(scene))
    recognition = Recognition(tenant=tenant, gallery=gallery, image_key=key, image_width=scene.shape[1],
                              image_height=scene.shape[0], status="done", params={"score_threshold": 0.0, "top_k": 5})
    recognition.save()
    _store_objects(recognition, objects, min_inliers=params.min_inliers)
    verified, unverified = DetectedObject.unscoped.filter(recognition=recognition).order_by("rank")
    return Verified(recognition, verified, unverified, reference, verified.bbox)


def _url(recognition: Recognition, position: int) -> str:
    return f"/dashboard/recognition/{recognition.public_id}/objects/{position}/evidence/"


def test_the_best_match_keeps_a_compact_record_of_its_inlier_pairs(tenant_a):
    scene = _verified_recognition(tenant_a)
    evidence = scene.verified.evidence
    assert scene.verified.matches[0]["label"] == "Printed Box" and evidence["inliers"] == scene.verified.matches[0]["inliers"]
    assert evidence["inliers"] > MAX_PAIRS == len(evidence["query"]) == len(evidence["reference"])
    assert all(isinstance(v, int) for pair in evidence["query"] + evidence["reference"] for v in pair)
    assert evidence["reference_size"] == [scene.reference.shape[1], scene.reference.shape[0]] and evidence["reference_box"] is None
    xmin, ymin, xmax, ymax = scene.box
    assert all(xmin - 1 <= x <= xmax + 1 and ymin - 1 <= y <= ymax + 1 for x, y in evidence["query"])
    assert len(str(evidence)) < 1500  # small enough to keep on every object
    assert scene.unverified.evidence is None


def test_the_evidence_picture_shows_both_pictures_side_by_side(tenant_a):
    scene = _verified_recognition(tenant_a)
    response = tenant_a.client("viewer").get(_url(scene.recognition, 0))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert "X-Shitu-Placeholder" not in response
    picture = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    # Both the crop and the reference are scaled to the panel height, side by side with a gap for the lines.
    xmin, ymin, xmax, ymax = (int(np.floor(v)) if i < 2 else int(np.ceil(v)) for i, v in enumerate(scene.box))
    crop_width = round((xmax - xmin) * PANEL_HEIGHT / (ymax - ymin))
    reference_width = round(scene.reference.shape[1] * PANEL_HEIGHT / scene.reference.shape[0])
    assert picture.shape[:2] == (PANEL_HEIGHT + 2 * MARGIN, 2 * MARGIN + crop_width + GAP + reference_width)
    # The lines cross the gap: the strip between the two pictures is not plain background.
    gap = picture[MARGIN:-MARGIN, MARGIN + crop_width + 4:MARGIN + crop_width + GAP - 4].astype(int)
    assert (np.abs(gap - [246, 247, 249]).sum(axis=2) > 60).mean() > 0.05


def test_evidence_is_404_for_another_tenant_and_for_an_object_without_any(tenant_a, tenant_b):
    scene = _verified_recognition(tenant_a)
    assert tenant_b.client("owner").get(_url(scene.recognition, 0)).status_code == 404
    assert tenant_b.client("owner").head(_url(scene.recognition, 0)).status_code == 404
    own = tenant_a.client("viewer")
    for url in (_url(scene.recognition, 1), _url(scene.recognition, 0).replace("/0/", "/5/")):
        response = own.get(url)
        assert response.status_code == 404, url
    assert own.get(_url(scene.recognition, 1)).json()["error"]["code"] == "no_evidence"
    # The reference image deleted since: nothing to draw against.
    ReferenceImage.unscoped.filter(pk=scene.verified.reference_image_id).delete()
    assert own.get(_url(scene.recognition, 0)).json()["error"]["code"] == "no_evidence"


def test_a_damaged_record_or_picture_gets_a_placeholder_not_an_error(tenant_a):
    scene = _verified_recognition(tenant_a)
    client = tenant_a.client("viewer")
    DetectedObject.unscoped.filter(pk=scene.verified.pk).update(evidence={"query": [[1, 2]], "reference": "x"})
    response = client.get(_url(scene.recognition, 0))
    assert response.status_code == 200 and response["X-Shitu-Placeholder"] == "1"
    DetectedObject.unscoped.filter(pk=scene.verified.pk).update(evidence=scene.verified.evidence, bbox=["left", None, 3, 4])
    assert client.get(_url(scene.recognition, 0))["X-Shitu-Placeholder"] == "1"
    object_store().put(scene.recognition.image_key, b"not a picture")
    DetectedObject.unscoped.filter(pk=scene.verified.pk).update(bbox=scene.box)
    assert client.get(_url(scene.recognition, 0))["X-Shitu-Placeholder"] == "1"


def test_pages_show_the_evidence_only_where_there_is_some(tenant_a):
    scene = _verified_recognition(tenant_a)
    html = tenant_a.client("viewer").get(f"/dashboard/recognition/{scene.recognition.public_id}/").content.decode()
    assert html.count('data-testid="evidence"') == 1 and _url(scene.recognition, 0) in html
    assert _url(scene.recognition, 1) not in html and "not verified geometrically" in html
    assert f'{scene.verified.evidence["inliers"]} keypoints of the photo (left) agree with the reference image of' in html
    assert "/objects/{index}/evidence/" in tenant_a.client("member").get("/dashboard/recognition/try/").content.decode()

    review = MatchReview(tenant=tenant_a.tenant, detected_object=scene.verified, gallery=scene.recognition.gallery,
                         reason=MatchReview.Reason.LOW_MARGIN)
    review.save()
    queue = tenant_a.client("admin").get("/dashboard/recognition/review/").content.decode()
    assert 'data-testid="evidence-thumb"' in queue and _url(scene.recognition, 0) in queue

    # Platform staff see it in the Django admin review too, as a list thumbnail and on the review's page.
    staff = tenant_a.users["admin"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_matchreview", "change_matchreview"]))
    admin = Client()
    admin.force_login(staff)
    picture_url = f"/admin/recognition/matchreview/{review.pk}/picture/evidence.jpg"
    assert picture_url in admin.get("/admin/recognition/matchreview/").content.decode()
    change = admin.get(f"/admin/recognition/matchreview/{review.pk}/change/").content.decode()
    assert picture_url in change and "keypoints agree" in change
    picture = admin.get(picture_url)
    assert picture.status_code == 200 and picture["Content-Type"] == "image/jpeg"
    DetectedObject.unscoped.filter(pk=scene.verified.pk).update(evidence=None)
    assert "not verified" in admin.get("/admin/recognition/matchreview/").content.decode()
    assert admin.get(picture_url).status_code == 404
