"""Pipeline parameters are defined once (PipelineParams), and a recognition reads its embedding rows once."""
from __future__ import annotations

import base64
import time
from dataclasses import asdict

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from galleries.models import Embedding, Gallery, Product, ReferenceImage
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from recognition.engine.search import VectorIndex
from recognition.engine.types import Box
from recognition.models import DetectedObject, Recognition
from recognition.serializers import REQUEST_PIPELINE_FIELDS, InvalidPipelineParams, pipeline_params_from
from recognition.services import EmbeddingRows, _labels_for, _store_objects
from tests.engine.test_pipeline import ConstantExtractor
from tests.support.images import product_photo


def test_request_fields_are_pipeline_params_fields_with_its_defaults():
    from recognition.serializers import RecognitionRequestSerializer

    defaults = PipelineParams()
    fields = RecognitionRequestSerializer().fields
    for name in REQUEST_PIPELINE_FIELDS:
        assert fields[name].default == getattr(defaults, name), name


def test_pipeline_params_own_checks_answer_with_a_code():
    with pytest.raises(InvalidPipelineParams) as caught:
        pipeline_params_from({"top_k": 0})
    assert caught.value.code == "invalid_params" and caught.value.http_status == 400 and "top_k" in caught.value.message


@pytest.mark.django_db
def test_a_request_without_parameters_stores_the_pipeline_defaults(tenant_a, monkeypatch):
    monkeypatch.setattr("recognition.services.recognition_enqueue", lambda recognition: _Done())
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    data = base64.b64encode(product_photo((9, 99, 199))).decode()
    response = client.post("/api/v1/recognitions/", {"image_base64": data, "run_async": True, "top_k": 7}, format="json")
    assert response.status_code == 202, response.json()
    stored = Recognition.unscoped.get(public_id=response.json()["id"]).params
    assert stored == asdict(PipelineParams(top_k=7)) and response.json()["params"]["nms_iou"] == PipelineParams().nms_iou


class _Done:
    def get(self, timeout, **_):
        return None


@pytest.mark.django_db
def test_labels_and_stored_matches_come_from_one_read_of_the_embeddings(tenant_a):
    tenant = tenant_a.tenant
    gallery = Gallery(tenant=tenant, name="Aisle")
    gallery.save()
    embedding_ids = []
    for label in ("Red Cola", "Green Tea"):
        product = Product(tenant=tenant, gallery=gallery, label=label, display_name=f"{label}!")
        product.save()
        image = ReferenceImage(tenant=tenant, gallery=gallery, product=product, object_key=f"k/{label}", checksum=label,
                               size_bytes=1, width=10, height=10, status="ready")
        image.save()
        embedding = Embedding(tenant=tenant, gallery=gallery, reference_image=image, model_key="test@1",
                              vector=[1.0] + [0.0] * 511, box=None)
        embedding.save()
        embedding_ids.append(embedding.pk)
    index = VectorIndex(ConstantExtractor.feature_dim, "Flat")
    index.build(np.array(embedding_ids, dtype=np.int64), np.array([[1, 0, 0, 0], [0.8, 0.6, 0, 0]], dtype=np.float32))
    rows = EmbeddingRows(tenant=tenant)
    pipeline = RecognitionPipeline(GivenBoxDetector([Box(0, 0, 50, 50, 0.9)]), ConstantExtractor(), index,
                                   labels=lambda ids: _labels_for(tenant, ids, rows=rows))
    recognition = Recognition(tenant=tenant, gallery=gallery, image_key="k/q", image_width=64, image_height=64,
                              status="done", params={})
    recognition.save()
    with CaptureQueriesContext(connection) as queries:
        params = PipelineParams(add_whole_image=False, score_threshold=0.0)
        objects = pipeline.recognize(np.full((64, 64, 3), 128, dtype=np.uint8), params)
        _store_objects(recognition, objects, min_inliers=params.min_inliers, rows=rows)
    embedding_reads = [q["sql"] for q in queries.captured_queries if 'FROM "galleries_embedding"' in q["sql"]]
    assert len(embedding_reads) == 1, embedding_reads
    stored = DetectedObject.unscoped.get(recognition=recognition)
    assert [m["label"] for m in stored.matches] == ["Red Cola", "Green Tea"]
    assert stored.matches[0]["display_name"] == "Red Cola!" and stored.product.label == "Red Cola"
