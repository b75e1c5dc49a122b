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
        if not raw_key.startswith(API_KEY_PREFIX):
            # A key was sent but cannot be one of ours: say so, rather than "credentials were not provided".
            raise exceptions.AuthenticationFailed(
                f"Invalid API key: keys start with '{API_KEY_PREFIX}'. Send `Authorization: {self.keyword} "
                f"{API_KEY_PREFIX}…` or `X-API-Key: {API_KEY_PREFIX}…`."
            )
        api_key = api_key_authenticate(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Any) -> str:
        return self.keyword

    def _raw_key(self, request: Any) -> str | None:
        """The key sent (possibly malformed, even empty), or None when the request names no API key at all."""
        scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        ours = scheme.lower() in {"api-key", "bearer"}  # no other scheme is ours: Basic etc. are left alone
        if ours and value.strip().startswith(API_KEY_PREFIX):
            return value.strip()
        if "HTTP_X_API_KEY" in request.META:  # also behind a gateway that puts its own token in Authorization
            return request.META["HTTP_X_API_KEY"].strip()
        return value.strip() if ours else None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents API-key auth in the OpenAPI schema (registered on import)."""

    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Api-Key shitu_…` (or the `X-API-Key` header)"}
