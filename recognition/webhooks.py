"""Result callbacks for async recognitions: a signed JSON POST, retried, never to private addresses by default."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from celery import shared_task
from django.conf import settings

from recognition.models import Recognition
from recognition.serializers import RecognitionSerializer


class WebhookRefused(Exception):
    pass


def webhook_signature(tenant_id: int, body: bytes) -> str:
    """HMAC-SHA256 of the body with a per-tenant key, sent as `X-Shitu-Signature` so receivers can verify origin."""
    key = hmac.new(settings.SECRET_KEY.encode(), f"webhook:{tenant_id}".encode(), hashlib.sha256).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def check_destination(url: str) -> None:
    """Refuse non-http(s) URLs and, unless allowed, hosts resolving to loopback/private/link-local addresses (SSRF)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WebhookRefused(f"webhook URL must be http(s): {url}")
    if settings.SHITU_WEBHOOK_ALLOW_PRIVATE:
        return
    for info in socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise WebhookRefused(f"webhook host {parsed.hostname} resolves to a non-public address")


@shared_task(name="recognition.webhook_deliver", bind=True, max_retries=4, default_retry_delay=5)
def webhook_deliver(self, recognition_id: int) -> int:
    recognition = Recognition.objects.prefetch_related("detected_objects").get(pk=recognition_id)
    body = json.dumps(RecognitionSerializer(recognition).data, default=str).encode()
    try:
        check_destination(recognition.webhook_url)
    except WebhookRefused:
        return 0
    request = urllib.request.Request(
        recognition.webhook_url, data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Shitu-Signature": webhook_signature(recognition.tenant_id, body)},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise self.retry(exc=error)
