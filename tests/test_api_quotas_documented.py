"""The schema states the quotas and rate limits in force, read from the tenant row and settings, and they hold."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient


def _schema(client) -> dict:
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.mark.django_db
def test_schema_states_the_callers_limits_and_the_recognition_limit_holds(tenant_a, settings):
    settings.SHITU_MAX_IMAGE_BYTES = 3 * 1024 * 1024
    settings.SHITU_MAX_IMPORT_UPLOAD_BYTES = 1024 * 1024 * 1024
    tenant = tenant_a.tenant
    tenant.requests_per_minute, tenant.recognitions_per_minute, tenant.max_images_per_gallery = 1234, 3, 4321
    tenant.save()
    client = tenant_a.key_client("member")

    schema = _schema(client)
    description = schema["info"]["description"]
    assert "## Quotas and rate limits" in description
    assert "1,234 API requests per minute" in description
    assert "3 recognitions per minute" in description
    assert "4,321 reference images per gallery" in description
    assert "an image 3 MiB" in description and "an import zip 1 GiB as sent" in description
    responses = schema["components"]["responses"]
    assert "3 recognitions per minute" in responses["RateLimited"]["description"]
    assert "Retry-After" in responses["RateLimited"]["headers"]
    assert "an image 3 MiB" in responses["PayloadTooLarge"]["description"]
    recognise = schema["paths"]["/api/v1/recognitions/"]["post"]["responses"]
    assert recognise["429"] == {"$ref": "#/components/responses/RateLimited"}

    # the documented recognition rate is the one enforced: the fourth POST in a minute is refused
    answers = [client.post("/api/v1/recognitions/", {}, format="json") for _ in range(4)]
    assert [a.status_code for a in answers] == [400, 400, 400, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limited" and int(answers[-1]["Retry-After"]) > 0


@pytest.mark.django_db
def test_schema_for_another_tenant_states_its_own_limits(tenant_a, tenant_b):
    tenant_a.tenant.recognitions_per_minute = 7
    tenant_a.tenant.save()
    description = _schema(tenant_b.key_client("viewer"))["info"]["description"]
    assert "Your tenant (Bolt Drinks): 600 API requests per minute" in description
    assert "120 recognitions per minute" in description and " 7 recognitions" not in description
    # the schema is public: without credentials it states the defaults a new tenant gets
    assert "A new tenant (defaults): 600 API requests per minute" in _schema(APIClient())["info"]["description"]
