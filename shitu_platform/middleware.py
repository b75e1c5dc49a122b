"""Refuse NUL characters in the query string before any view: PostgreSQL cannot compare them, and no legitimate
client sends them. (Credentials with odd characters are simply invalid: the API-key check answers 401.)"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from shitu_platform.errors import error_body

class RejectNulCharactersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if b"\x00" in unquote_to_bytes(query):
            message = "NUL characters are not allowed in the query string."
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid_characters", message), status=400)
            return HttpResponseBadRequest(message)
        return self.get_response(request)
