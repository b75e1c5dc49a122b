"""POST /api/v1/recognitions: answers, bad input codes, isolation, worker timeout fallback."""
import base64
import io
import time

import numpy as np
import pytest

from galleries.indexing import gallery_index_cache
from galleries.models import Embedding, Gallery, ReferenceImage
from recognition.engine.imageio import load_image
from recognition.engine.pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline
from modelhub.registry import extractor_for
from recognition.models import Recognition
from tests.support.images import bomb_png, product_photo, solid, truncated_jpeg

COLOURS = {"Red Cola 330 ml": (210, 30, 30), "Green Tea": (40, 170, 60), "Blue Water": (30, 70, 200)}


def _file(data: bytes, name: str = "photo.jpg") -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _recognise(client, data: bytes, **fields):
    return client.post("/api/v1/recognitions/", {"image": _file(data), **fields}, format="multipart")


def _gallery_with_products(client) -> int:
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()["id"]
    ids = []
    for label, colour in COLOURS.items():
        product = client.post("/api/v1/products/", {"gallery": gallery, "label": label}, format="json").json()["id"]
        for size in [(120, 160), (140, 150)]:
            ids += [r["id"] for r in client.post(f"/api/v1/products/{product}/images/", {"image": [_file(product_photo(colour, size))]}, format="multipart").json()]
    deadline = time.monotonic() + 60
    while ReferenceImage.unscoped.filter(pk__in=ids, status="pending").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return gallery


@pytest.mark.slow
def test_recognises_each_product_and_matches_the_engine_called_directly(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    gallery_id = _gallery_with_products(client)
    extractor = extractor_for(tenant=None)
    index = gallery_index_cache.get(Gallery.unscoped.get(pk=gallery_id), extractor.key).index
    labels = dict(Embedding.unscoped.filter(gallery_id=gallery_id).values_list("pk", "reference_image__product__label"))
    for label, colour in COLOURS.items():
        query = product_photo(tuple(min(255, c + 12) for c in colour), size=(200, 260))
        response = _recognise(client, query)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["status"] == "done" and body["objects"], body
        best = body["objects"][0]
        assert best["label"] == label and best["whole_image"] is True
        assert set(body["timings_ms"]) >= {"detect_ms", "extract_ms", "search_ms", "total_ms", "queue_ms"}

        direct = RecognitionPipeline(GivenBoxDetector([]), extractor.model, index, labels=labels).recognize(
            load_image(query), PipelineParams()
        )
        assert (best["label"], best["score"]) == (direct[0].label, pytest.approx(direct[0].score, abs=1e-3))


@pytest.mark.slow
def test_score_threshold_and_top_k_change_the_answer(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    _gallery_with_products(client)
    query = product_photo((210, 30, 30), size=(200, 260))
    strict = _recognise(client, query, score_threshold=0.9999).json()
    assert strict["status"] == "done" and strict["objects"] == []
    wide = _recognise(client, query, top_k=4, score_threshold=0.0).json()
    assert len(wide["objects"][0]["matches"]) == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload,code,status",
    [
        (b"", "empty_image", 400),
        (b"just some text, definitely not a photo", "not_an_image", 400),
        (b"%PDF-1.4 a document", "unsupported_image_format", 415),
        (truncated_jpeg(), "truncated_image", 400),
        (bomb_png(), "image_too_large", 413),
        (solid((1, 2, 3), size=(8, 8)), "image_too_small", 400),
    ],
)
def test_bad_images_get_clear_codes(tenant_a, payload, code, status):
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    response = _recognise(client, payload)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert not Recognition.unscoped.exists()


@pytest.mark.django_db
def test_request_shape_errors(tenant_a):
    client = tenant_a.key_client("member")
    assert client.post("/api/v1/recognitions/", {"image_base64": "x"}, format="json").json()["error"]["code"] == "no_gallery"
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    bad_b64 = client.post("/api/v1/recognitions/", {"image_base64": "***"}, format="json")
    assert bad_b64.status_code == 400 and bad_b64.json()["error"]["code"] == "not_an_image"
    neither = client.post("/api/v1/recognitions/", {}, format="json")
    assert neither.status_code == 400 and neither.json()["error"]["code"] == "invalid_request"
    out_of_range = _recognise(client, solid((5, 5, 5)), top_k=500)
    assert out_of_range.status_code == 400 and "top_k" in out_of_range.json()["error"]["details"]


@pytest.mark.django_db
def test_worker_timeout_answers_202_and_the_request_is_kept(tenant_a, settings, monkeypatch):
    """No worker is running: the sync call gives up after the timeout with 202 + Location, and nothing is lost."""
    settings.SHITU_RECOGNITION_TIMEOUT = 0.5
    monkeypatch.setattr("recognition.services.recognition_enqueue", lambda recognition: _NeverDone())
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    data = base64.b64encode(product_photo((9, 99, 199))).decode()
    response = client.post("/api/v1/recognitions/", {"image_base64": data}, format="json")
    assert response.status_code == 202 and response["Location"] == response.json()["url"]
    polled = client.get(response.json()["url"])
    assert polled.status_code == 200 and polled.json()["status"] == "queued"


class _NeverDone:
    def get(self, timeout, **_):
        from celery.exceptions import TimeoutError

        time.sleep(timeout)
        raise TimeoutError()


@pytest.mark.slow
def test_async_request_is_202_then_done(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    _gallery_with_products(client)
    response = _recognise(client, product_photo((40, 170, 60)), run_async="true")
    assert response.status_code == 202
    deadline = time.monotonic() + 30
    while (body := client.get(response.json()["url"]).json())["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["status"] == "done" and body["objects"][0]["label"] == "Green Tea"


@pytest.mark.django_db
def test_recognitions_of_b_are_404_for_a_and_b_gallery_is_refused(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr("recognition.services.recognition_enqueue", lambda recognition: _NeverDone())
    client_b = tenant_b.key_client("member")
    gallery_b = client_b.post("/api/v1/galleries/", {"name": "B"}, format="json").json()["id"]
    client_b.post("/api/v1/galleries/", {"name": "B2"}, format="json")
    url_b = _recognise(client_b, product_photo((1, 200, 1)), run_async="true").json()["url"]
    client_a = tenant_a.key_client("owner")
    assert client_a.get(url_b).status_code == 404
    assert tenant_a.client("owner").get(url_b).status_code == 404
    assert client_a.get("/api/v1/recognitions/").json()["results"] == []
    client_a.post("/api/v1/galleries/", {"name": "A"}, format="json")
    foreign = _recognise(client_a, product_photo((1, 200, 1)), gallery=gallery_b)
    assert foreign.status_code == 400 and "gallery" in foreign.json()["error"]["details"]
