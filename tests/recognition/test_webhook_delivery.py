"""Webhooks: refused for private hosts at request time, delivered for real by a worker, signed, outcome recorded."""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from galleries.models import ReferenceImage
from recognition.models import Recognition
from recognition.webhooks import WebhookPrivateAddress, check_destination, webhook_post
from tests.support.images import product_photo

REPO_ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that answers the given statuses in order (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.put((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?shop=7"

    def next_request(self, timeout: float = 60) -> tuple[str, dict[str, str], bytes]:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.close()


def _receiver(receivers: list[Receiver], statuses: list[int]) -> Receiver:
    receivers.append(Receiver(statuses))
    return receivers[-1]


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _expected_signature(tenant_id: int, body: bytes) -> str:
    """The documented scheme, computed here independently: HMAC-SHA256(HMAC-SHA256(SECRET_KEY, "webhook:<tenant>"), body)."""
    from django.conf import settings

    key = hmac.new(settings.SECRET_KEY.encode(), f"webhook:{tenant_id}".encode(), hashlib.sha256).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _gallery_with_one_product(client) -> int:
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()["id"]
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": "Green Tea"}, format="json").json()["id"]
    ids = [r["id"] for r in client.post(f"/api/v1/products/{product}/images/",
                                        {"image": [_file(product_photo((40, 170, 60)))]}, format="multipart").json()]
    deadline = time.monotonic() + 60
    while ReferenceImage.unscoped.filter(pk__in=ids, status="pending").exists():
        assert time.monotonic() < deadline, "the reference image was never embedded"
        time.sleep(0.2)
    return gallery


def _recognise_async(client, gallery: int, webhook_url: str) -> dict:
    response = client.post("/api/v1/recognitions/", {"image": _file(product_photo((40, 170, 60), size=(200, 260))),
                                                     "gallery": gallery, "run_async": "true", "webhook_url": webhook_url},
                           format="multipart")
    assert response.status_code == 202, response.json()
    return response.json()


def _wait_for_webhook(client, url: str, final: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (body := client.get(url).json())["webhook"]["status"] not in final:
        assert time.monotonic() < deadline, body["webhook"]
        time.sleep(0.3)
    return body


@pytest.mark.slow
def test_the_worker_registers_the_delivery_task():
    """What a worker imports (Celery autodiscovers `tasks.py` only) must include `recognition.webhook_deliver`."""
    probe = ("import django; django.setup(); from shitu_platform.celery import app; "
             "app.loader.import_default_modules(); print(sorted(n for n in app.tasks if n.startswith('recognition.')))")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="shitu_platform.settings_test")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'recognition.webhook_deliver'" in result.stdout.splitlines()[-1], result.stdout


@pytest.mark.django_db
@pytest.mark.parametrize("url,code", [
    ("http://127.0.0.1:9/hook", "webhook_private_address"),
    ("http://localhost:8000/hook", "webhook_private_address"),
    ("http://10.1.2.3/hook", "webhook_private_address"),
    ("http://169.254.169.254/latest/meta-data/", "webhook_private_address"),
    ("http://[::ffff:127.0.0.1]/hook", "webhook_private_address"),
    ("ftp://example.com/hook", "webhook_bad_url"),
])
def test_private_or_non_http_webhook_is_refused_at_request_time(tenant_a, settings, url, code):
    settings.SHITU_WEBHOOK_ALLOW_PRIVATE = False
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "G"}, format="json")
    response = client.post("/api/v1/recognitions/", {"image": _file(product_photo((1, 2, 200))), "run_async": "true",
                                                     "webhook_url": url}, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["details"] == {"webhook_url": url}
    assert not Recognition.unscoped.exists()


def test_public_destinations_pass_the_request_check(settings):
    settings.SHITU_WEBHOOK_ALLOW_PRIVATE = False
    check_destination("http://93.184.216.34/hook")
    check_destination("https://[2606:4700:4700::1111]:8443/hook?x=1")


def test_delivery_checks_the_connected_address_not_only_the_url(settings, receivers):
    """Even a URL that got past the request check (DNS can change) cannot reach a private peer at delivery."""
    settings.SHITU_WEBHOOK_ALLOW_PRIVATE = False
    receiver = _receiver(receivers, [200])
    with pytest.raises(WebhookPrivateAddress):
        webhook_post(receiver.url, b"{}", {"Content-Type": "application/json"})
    with pytest.raises(WebhookPrivateAddress):  # https: checked before the TLS handshake (else an SSL error here)
        webhook_post(receiver.url.replace("http:", "https:"), b"{}", {"Content-Type": "application/json"})
    with pytest.raises(queue.Empty):
        receiver.next_request(timeout=0.5)


@pytest.mark.slow
def test_webhook_is_delivered_signed_and_shown_delivered(tenant_a, celery_workers, settings, receivers):
    settings.SHITU_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    celery_workers.start("webhooks", {"SHITU_WEBHOOK_ALLOW_PRIVATE": "true"})
    client = tenant_a.key_client("member")
    gallery = _gallery_with_one_product(client)
    receiver = _receiver(receivers, [200])
    accepted = _recognise_async(client, gallery, receiver.url)
    assert accepted["webhook"] == {"url": receiver.url, "status": "pending", "attempts": 0, "last_error": "",
                                   "delivered_at": None, "log": []}

    path, headers, body = receiver.next_request()
    assert path == "/hook?shop=7" and headers["Content-Type"] == "application/json"
    assert hmac.compare_digest(headers["X-Shitu-Signature"], _expected_signature(tenant_a.tenant.pk, body))
    payload = json.loads(body)
    assert payload["id"] == accepted["id"] and payload["status"] == "done"
    assert payload["objects"][0]["label"] == "Green Tea"

    shown = _wait_for_webhook(client, accepted["url"], {"delivered", "failed"})
    assert shown["webhook"]["status"] == "delivered", shown["webhook"]
    assert shown["webhook"]["attempts"] == 1 and shown["webhook"]["delivered_at"] and shown["webhook"]["last_error"] == ""
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in shown["webhook"]["log"]] == [(1, 200, "delivered")]
    page = tenant_a.client("owner").get(f"/dashboard/recognition/{accepted['id']}/").content.decode()
    assert re.search(r'data-testid="webhook"><span class="badge">delivered</span>', page), page
    with pytest.raises(queue.Empty):
        receiver.next_request(timeout=1)  # sent once


@pytest.mark.slow
def test_refused_payload_fails_with_its_reason_and_a_5xx_is_retried(tenant_a, celery_workers, settings, receivers):
    settings.SHITU_WEBHOOK_ALLOW_PRIVATE = True
    celery_workers.start("webhooks", {"SHITU_WEBHOOK_ALLOW_PRIVATE": "true"})
    client = tenant_a.key_client("member")
    gallery = _gallery_with_one_product(client)
    gone = _receiver(receivers, [410])
    flaky = _receiver(receivers, [503, 204])
    refused = _recognise_async(client, gallery, gone.url)
    retried = _recognise_async(client, gallery, flaky.url)

    failed = _wait_for_webhook(client, refused["url"], {"delivered", "failed"})
    assert failed["webhook"]["status"] == "failed" and failed["webhook"]["attempts"] == 1
    assert "HTTP 410" in failed["webhook"]["last_error"] and failed["webhook"]["delivered_at"] is None
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in failed["webhook"]["log"]] == [(1, 410, "failed")]

    delivered = _wait_for_webhook(client, retried["url"], {"delivered", "failed"})
    assert delivered["webhook"]["status"] == "delivered" and delivered["webhook"]["attempts"] == 2, delivered["webhook"]
    log = delivered["webhook"]["log"]  # each attempt with its time and the receiver's answer
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in log] == [(1, 503, "retry"), (2, 204, "delivered")]
    assert log[0]["at"] < log[1]["at"] and "HTTP 503" in log[0]["error"]
    page = tenant_a.client("owner").get(f"/dashboard/recognition/{retried['id']}/").content.decode()
    shown_log = re.search(r'data-testid="webhook-log">(.*?)</ol>', page, re.S).group(1)
    assert "retry · HTTP 503" in shown_log and "delivered · HTTP 204" in shown_log and "<time" in shown_log
    first, second = flaky.next_request(), flaky.next_request()
    for _path, headers, body in (first, second):
        assert hmac.compare_digest(headers["X-Shitu-Signature"], _expected_signature(tenant_a.tenant.pk, body))
    assert json.loads(second[2])["webhook"]["attempts"] == 2  # the receiver can tell a retry
