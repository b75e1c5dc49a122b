"""Result callbacks for recognitions: a signed JSON POST, never to private addresses unless allowed, with its outcome
kept on the recognition. The Celery task that drives retries is `recognition.tasks.webhook_deliver`."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Func, JSONField, Value
from django.utils import timezone

from recognition.models import Recognition
from shitu_platform.errors import PlatformError

TIMEOUT_SECONDS = 5
# Statuses worth another try: the receiver is overloaded or down, not refusing this payload.
RETRYABLE_STATUSES = {408, 425, 429}


class WebhookRefused(PlatformError):
    """A destination the platform will not call; permanent, so delivery is not retried."""

    code = "webhook_refused"
    http_status = 400


class WebhookBadUrl(WebhookRefused):
    code = "webhook_bad_url"


class WebhookUnresolvable(WebhookRefused):
    code = "webhook_unresolvable"


class WebhookPrivateAddress(WebhookRefused):
    code = "webhook_private_address"


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # a Recognition.WebhookStatus value
    retry: bool  # a transient failure: the task should try again later


def webhook_signature(tenant_id: int, body: bytes) -> str:
    """HMAC-SHA256 of the body with a per-tenant key, sent as `X-Shitu-Signature` so receivers can verify origin."""
    key = hmac.new(settings.SECRET_KEY.encode(), f"webhook:{tenant_id}".encode(), hashlib.sha256).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is loopback too
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified)


def check_destination(url: str) -> None:
    """Refuse, at request time, non-http(s) URLs and hosts that resolve to a non-public address (SSRF).

    Delivery checks again on the connected socket, so a DNS answer that changes later cannot reach inside."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as error:
        raise WebhookBadUrl(f"webhook URL is malformed: {error}", details={"webhook_url": url}) from error
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WebhookBadUrl("webhook URL must be http(s) with a host", details={"webhook_url": url})
    if settings.SHITU_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise WebhookUnresolvable(f"webhook host {parsed.hostname} does not resolve",
                                  details={"webhook_url": url}) from error
    private = sorted({info[4][0] for info in infos if not _is_public(info[4][0])})
    if private:
        raise WebhookPrivateAddress(
            f"webhook host {parsed.hostname} resolves to a non-public address ({', '.join(private)}); "
            "set SHITU_WEBHOOK_ALLOW_PRIVATE to allow it", details={"webhook_url": url},
        )


class _PublicPeerHTTPConnection(http.client.HTTPConnection):
    """Checks the address actually connected to, before a byte is sent (DNS rebinding cannot bypass it)."""

    def connect(self) -> None:
        super().connect()
        peer = self.sock.getpeername()[0]
        if not settings.SHITU_WEBHOOK_ALLOW_PRIVATE and not _is_public(peer):
            self.sock.close()
            raise WebhookPrivateAddress(f"webhook host {self.host} connected to a non-public address ({peer})")


class _PublicPeerHTTPSConnection(http.client.HTTPSConnection, _PublicPeerHTTPConnection):
    """TLS on top of the checked socket: the MRO runs the peer check before the handshake."""


def webhook_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST, without proxies or redirects (either could lead somewhere the checks did not look); the status."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        connection: http.client.HTTPConnection = _PublicPeerHTTPSConnection(
            parsed.hostname, parsed.port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
    else:
        connection = _PublicPeerHTTPConnection(parsed.hostname, parsed.port, timeout=TIMEOUT_SECONDS)
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # the receiver's answer is not used; read a little so the connection closes cleanly
        return response.status
    finally:
        connection.close()


def webhook_payload(recognition: Recognition) -> bytes:
    from recognition.serializers import RecognitionSerializer  # the serializer validates webhook URLs with this module

    return json.dumps(RecognitionSerializer(recognition).data, default=str).encode()


def webhook_mark_pending(*, recognition_id: int) -> bool:
    """Claim the delivery once per recognition (a redelivered recognition task must not send it twice)."""
    return bool(Recognition.unscoped.filter(pk=recognition_id, webhook_status="").exclude(webhook_url="")
                .update(webhook_status=Recognition.WebhookStatus.PENDING))


def webhook_record_failure(*, recognition_id: int, reason: str) -> None:
    Recognition.unscoped.filter(pk=recognition_id).update(webhook_status=Recognition.WebhookStatus.FAILED,
                                                         webhook_last_error=reason[:2000])


def _log_attempt(*, recognition_id: int, attempt: int, status_code: int | None, outcome: str, error: str = "") -> None:
    """Append one attempt to the recognition's delivery log in the database itself (jsonb ||), so two workers
    retrying the same delivery cannot overwrite each other's entries."""
    entry = {"attempt": attempt, "at": timezone.now().isoformat(), "status_code": status_code, "outcome": outcome,
             "error": error[:500]}
    appended = Func(F("webhook_log"), Value([entry], output_field=JSONField()), arg_joiner=" || ",
                    template="%(expressions)s", output_field=JSONField())
    Recognition.unscoped.filter(pk=recognition_id).update(webhook_log=appended)


def webhook_attempt(*, recognition_id: int, last_attempt: bool) -> DeliveryOutcome:
    """Send the result once and record what happened; transient failures ask for a retry until `last_attempt`."""
    # a worker re-reading the row it was handed: no tenant to scope by
    recognition = Recognition.unscoped.prefetch_related("detected_objects").filter(pk=recognition_id).first()
    if recognition is None:  # purged by retention while the delivery waited for a retry
        return DeliveryOutcome(status="", retry=False)
    if recognition.webhook_status == Recognition.WebhookStatus.DELIVERED or not recognition.webhook_url:
        return DeliveryOutcome(status=recognition.webhook_status, retry=False)
    Recognition.unscoped.filter(pk=recognition_id).update(webhook_attempts=F("webhook_attempts") + 1)
    recognition.webhook_attempts += 1  # the payload tells the receiver which attempt this is
    body = webhook_payload(recognition)
    headers = {"Content-Type": "application/json", "User-Agent": "ShiTu-Webhook/1",
               "X-Shitu-Signature": webhook_signature(recognition.tenant_id, body)}
    retryable = True
    attempt, status = recognition.webhook_attempts, None
    try:
        status = webhook_post(recognition.webhook_url, body, headers)
    except WebhookRefused as error:
        reason, retryable = f"refused: {error.message}", False
    except (OSError, http.client.HTTPException) as error:  # DNS, refused, reset, timeout, TLS
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    else:
        if 200 <= status < 300:
            _log_attempt(recognition_id=recognition_id, attempt=attempt, status_code=status, outcome="delivered")
            Recognition.unscoped.filter(pk=recognition_id).update(
                webhook_status=Recognition.WebhookStatus.DELIVERED, webhook_last_error="", webhook_delivered_at=timezone.now())
            return DeliveryOutcome(status=Recognition.WebhookStatus.DELIVERED, retry=False)
        reason = f"the receiver answered HTTP {status}"
        retryable = status >= 500 or status in RETRYABLE_STATUSES  # 3xx are not followed, 4xx refuse this payload
    if retryable and not last_attempt:
        _log_attempt(recognition_id=recognition_id, attempt=attempt, status_code=status, outcome="retry", error=reason)
        Recognition.unscoped.filter(pk=recognition_id).update(webhook_last_error=reason[:2000])
        return DeliveryOutcome(status=Recognition.WebhookStatus.PENDING, retry=True)
    _log_attempt(recognition_id=recognition_id, attempt=attempt, status_code=status, outcome="failed", error=reason)
    webhook_record_failure(recognition_id=recognition_id, reason=reason)
    return DeliveryOutcome(status=Recognition.WebhookStatus.FAILED, retry=False)
