"""Error pages: JSON under /api/, HTML elsewhere."""
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from shitu_platform.errors import json_not_found, json_server_error


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_server_error(request)
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Oversized bodies and other request-level refusals: JSON with a code under /api/."""
    if request.path.startswith("/api/"):
        from django.core.exceptions import RequestDataTooBig
        from django.http import JsonResponse

        from shitu_platform.errors import error_body

        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("request_too_large", "The request body is over the size limit."), status=413)
        return JsonResponse(error_body("bad_request", "The request could not be read."), status=400)
    return defaults.bad_request(request, exception)
