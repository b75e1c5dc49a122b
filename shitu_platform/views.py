"""Error pages (JSON under /api/, the dashboard's styled pages elsewhere) and the favicon."""
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from django.views import defaults

from shitu_platform.errors import error_body, json_not_found, json_permission_denied, json_server_error


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)  # templates/404.html


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_permission_denied(request, exception)
    return defaults.permission_denied(request, exception)  # templates/403.html


def server_error(request: HttpRequest) -> HttpResponse:
    """templates/500.html is rendered without the request, so no context processor (user, tenant) runs: the page
    cannot fail, nor touch the database, when what broke is the database."""
    if request.path.startswith("/api/"):
        return json_server_error(request)
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Oversized bodies and other request-level refusals: JSON with a code under /api/."""
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("request_too_large", "The request body is over the size limit."), status=413)
        return JsonResponse(error_body("bad_request", "The request could not be read."), status=400)
    return defaults.bad_request(request, exception)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon."""
    return HttpResponseRedirect(static("shitu/favicon.svg"))
