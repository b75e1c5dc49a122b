"""DRF authentication by tenant API key (`Authorization: Api-Key <key>` or `X-API-Key: <key>`)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from shitu_platform.tenancy.models import ApiKey
from shitu_platform.tenancy.services import API_KEY_PREFIX, api_key_authenticate


class ApiKeyPrincipal:
    """The `request.user` of an API-key request: authenticated, not a person, never staff."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.pk = None
        self.id = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request: Any) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        raw_key = self._raw_key(request)
        if raw_key is None:
            return None
        api_key = api_key_authenticate(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Any) -> str:
        return self.keyword

    def _raw_key(self, request: Any) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in {"api-key", "bearer"} and value.strip().startswith(API_KEY_PREFIX):
            return value.strip()
        x_api_key = request.META.get("HTTP_X_API_KEY", "").strip()
        return x_api_key or None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents API-key auth in the OpenAPI schema (registered on import)."""

    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Api-Key shitu_…` (or the `X-API-Key` header)"}
