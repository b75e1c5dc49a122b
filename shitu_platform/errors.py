"""Typed errors with machine-readable codes, and the one place that maps them to HTTP."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

logger = logging.getLogger(__name__)


class PlatformError(Exception):
    """Base of the platform's own errors; `code` is what clients switch on."""

    code = "platform_error"
    http_status = 400

    def __init__(self, message: str = "", *, details: Any = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.details = details


class QuotaExceeded(PlatformError):
    code = "quota_exceeded"
    http_status = 429


class ServiceUnavailable(PlatformError):
    code = "service_unavailable"
    http_status = 503


# Errors raised by layers that must not import Django (engine, storage) are mapped by class name
# and `code` attribute, so those layers stay framework-free.
_STATUS_BY_CODE = {
    "empty_image": 400,
    "not_an_image": 400,
    "truncated_image": 400,
    "unsupported_image_format": 415,
    "image_too_small": 400,
    "image_too_large": 413,
    "file_too_large": 413,
    "invalid_object_key": 400,
    "object_not_found": 404,
    "storage_unavailable": 503,
    "storage_error": 503,
    "model_not_found": 503,
    "dimension_mismatch": 500,
    "invalid_filter": 400,
}

_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.ValidationError: "invalid_request",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def _infrastructure_errors() -> tuple[type[BaseException], ...]:
    """A database, broker or cache that does not answer: the client should retry later (503), not see a 500."""
    import kombu.exceptions
    import redis.exceptions
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError, kombu.exceptions.OperationalError, redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError)


def status_for(exc: Exception) -> int | None:
    """HTTP status for a typed error from any layer, or None when it is not one of ours."""
    if isinstance(exc, PlatformError):
        return exc.http_status
    if isinstance(exc, _infrastructure_errors()):
        return 503
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error leaves as {"error": {"code", "message", "details"}}."""
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("request_too_large", "The request body is over the size limit."), status=413)
    status = status_for(exc)
    if status is not None:
        if status == 503 and not hasattr(exc, "code"):
            logger.warning("service unavailable: %s: %s", type(exc).__name__, exc)
            response = Response(error_body("service_unavailable", "A backing service is unavailable; retry shortly."), status=503)
        else:
            message = getattr(exc, "message", None) or str(exc)
            response = Response(error_body(exc.code, message, getattr(exc, "details", None)), status=status)  # type: ignore[attr-defined]
        if status == 503:
            response["Retry-After"] = "5"  # every outage answer says when to come back
        return response
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_default_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "api_error")
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body(code, "The request is invalid.", response.data)
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        response.data = error_body(code, str(detail))
    if isinstance(exc, drf_exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(int(exc.wait) + 1)
    return response


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "You do not have permission to perform this action."), status=403)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("internal_error", "Internal server error."), status=500)
