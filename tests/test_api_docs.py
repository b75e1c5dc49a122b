"""API docs: Swagger UI from pinned local assets (works offline), and an OpenAPI schema that tells the truth."""
from __future__ import annotations

import inspect
import re

import jsonschema
import pytest
from rest_framework.test import APIClient

from shitu_platform.tenancy.scoping import TenantScopedAPIMixin
from tests.support.openapi import generated_schema, schema_operations

ERROR_STATUSES_EVERYWHERE = {"401", "403", "429", "503"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return generated_schema()


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
def test_docs_page_uses_only_local_assets_and_they_are_served(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert not re.search(r"https?://|//cdn|unpkg|jsdelivr", html), "the docs page must not load anything remote"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert len(scripts) >= 2 and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(_body(served)) > (10_000 if asset.endswith(".js") else 0), asset
    bundle = client.get(next(s for s in scripts if s.endswith("swagger-ui-bundle.js")))
    assert "javascript" in bundle["Content-Type"] and b"SwaggerUIBundle" in _body(bundle)
    assert '"/api/v1/schema/"' in html  # the page loads this server's schema


def test_recognition_image_is_a_binary_upload(schema):
    create = schema["paths"]["/api/v1/recognitions/"]["post"]
    assert create["requestBody"]["content"]["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/RecognitionRequest"}
    image = schema["components"]["schemas"]["RecognitionRequest"]["properties"]["image"]
    assert (image["type"], image["format"]) == ("string", "binary")


def test_no_operation_is_described_by_a_developer_note(schema):
    note = inspect.cleandoc(TenantScopedAPIMixin.__doc__)
    leaked = [(m, p) for p, m, op in schema_operations(schema) if note in op.get("description", "") or "DRF" in op.get("description", "")]
    assert leaked == []
    galleries = schema["paths"]["/api/v1/galleries/"]
    assert galleries["get"]["description"] == "The caller's tenant's galleries, paginated."
    assert schema["paths"]["/api/v1/reference-images/{id}/"]["delete"]["description"] == "Delete a reference image."
    # an action with its own docstring keeps it
    assert schema["paths"]["/api/v1/recognitions/"]["post"]["description"].startswith("Synchronous by default")


def test_error_envelope_is_a_component_and_every_operation_documents_its_errors(schema):
    components = schema["components"]
    assert components["schemas"]["ErrorEnvelope"]["properties"]["error"] == {"$ref": "#/components/schemas/Error"}
    assert components["schemas"]["Error"]["required"] == ["code", "message"]
    for path, method, operation in schema_operations(schema):
        responses = operation["responses"]
        expected = set(ERROR_STATUSES_EVERYWHERE)
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected.add("400")
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            name = responses[status]["$ref"].rsplit("/", 1)[-1]
            content = components["responses"][name]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path, status)
    recognise = schema["paths"]["/api/v1/recognitions/"]["post"]["responses"]
    assert {"400", "413", "415"} <= set(recognise)
    assert "Retry-After" in components["responses"]["RateLimited"]["headers"]


@pytest.mark.django_db
def test_real_error_answers_match_the_documented_envelope(schema, tenant_a):
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope", "components": schema["components"]}
    client = tenant_a.key_client("member")
    not_found = client.get("/api/v1/galleries/987654/")
    invalid = client.post("/api/v1/recognitions/", {}, format="json")
    unauthenticated = APIClient().get("/api/v1/galleries/")
    for response, status in ((not_found, 404), (invalid, 400), (unauthenticated, 401)):
        assert response.status_code == status
        jsonschema.validate(response.json(), envelope)
    with pytest.raises(jsonschema.ValidationError):  # strict enough to tell DRF's default body apart
        jsonschema.validate({"detail": "Not found."}, envelope)
