"""Object storage (S3 protocol, moto's server on loopback) goes away while the stack runs: clear 503s, nothing half
written, and everything works again once it is back."""
from __future__ import annotations

import logging
import time

import pytest
from moto.server import ThreadedMotoServer

from shitu_platform.demo_data import demo_query_photos
from shitu_platform.embedded import free_port
from shitu_platform.launcher import api_call, api_request, multipart_body
from tests.faults.test_stack_faults import Stack, _eventually, _healthz

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_stack():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack = Stack({"STORAGE_BACKEND": "s3", "S3_ENDPOINT": f"127.0.0.1:{port}", "S3_ACCESS_KEY": "testing",
                   "S3_SECRET_KEY": "testing", "S3_BUCKET": "shitu-faults", "S3_REGION": "us-east-1"})
    stack.moto = server
    stack.moto_port = port
    stack.start()
    yield stack
    stack.stop()
    server.stop()


def _readyz(stack) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{stack.base}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_storage_outage_gives_503_and_recovers(s3_stack):
    stack = s3_stack
    cola = demo_query_photos()[0]
    assert api_call(stack.base, stack.api_key, "POST", "/api/v1/recognitions/", *multipart_body("image", "q.jpg", cola.data))[0] == 200
    _, galleries = api_call(stack.base, stack.api_key, "GET", "/api/v1/galleries/")
    gallery = galleries["results"][0]
    _, products = api_call(stack.base, stack.api_key, "GET", f"/api/v1/products/?gallery={gallery['id']}")
    product_id = products["results"][0]["id"]
    _, before = api_call(stack.base, stack.api_key, "GET", "/api/v1/recognitions/?limit=500")

    stack.moto.stop()  # the moto backend keeps its data in this process: a restart brings the same objects back
    try:
        status, body, headers = api_request(stack.base, stack.api_key, "POST", "/api/v1/recognitions/",
                                            *multipart_body("image", "q.jpg", cola.data))
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        assert int(headers["Retry-After"]) >= 1  # clients are told when to come back
        status, body = api_call(stack.base, stack.api_key, "POST", f"/api/v1/products/{product_id}/images/",
                                *multipart_body("image", "new.jpg", demo_query_photos()[1].data))
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        status, ready = _readyz(stack)
        assert status == 503 and ready["checks"]["storage"]["ok"] is False
        assert _healthz(stack.base) == 200
        _, during = api_call(stack.base, stack.api_key, "GET", "/api/v1/recognitions/?limit=500")
        assert during["count"] == before["count"], "a recognition row was written without its photo"
    finally:
        stack.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=stack.moto_port, verbose=False)
        stack.moto.start()

    _eventually(lambda: _readyz(stack)[0] == 200, what="readiness after storage came back")
    status, answer = api_call(stack.base, stack.api_key, "POST", "/api/v1/recognitions/", *multipart_body("image", "q.jpg", cola.data))
    assert status == 200 and answer["objects"][0]["label"] == cola.label
    status, uploaded = api_call(stack.base, stack.api_key, "POST", f"/api/v1/products/{product_id}/images/",
                                *multipart_body("image", "new.jpg", demo_query_photos()[1].data))
    assert status == 201 and uploaded[0]["created"] is True
    _eventually(lambda: api_call(stack.base, stack.api_key, "GET", f"/api/v1/reference-images/{uploaded[0]['id']}/")[1]["status"] == "ready",
                what="the upload embedded after the outage")
