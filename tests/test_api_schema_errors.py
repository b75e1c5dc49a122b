"""Every error status an operation really answers is in its schema, with the error envelope: the 409s each view
declares (provoked here through the API), and the 413/415 any request body can get."""
from __future__ import annotations

import base64
import json

import pytest
from django.test import override_settings
from django.urls import get_resolver

from galleries.models import ReferenceImage
from shitu_platform.errors import PlatformError
from shitu_platform.openapi import ERROR_RESPONSES
from tests.support.galleries import ready_gallery_without_worker
from tests.support.images import product_photo
from tests.support.openapi import generated_schema, schema_operations

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
# 409 errors no API operation can answer, with where they are answered instead
NOT_IN_THE_API = {"image_not_ready": "the box editor (POST /dashboard/galleries/images/{id}/box/) is dashboard-only"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return generated_schema()


def _operations(schema: dict) -> dict[str, tuple[str, str, dict]]:
    """operationId -> (method, path, operation)."""
    return {operation["operationId"]: (method, path, operation) for path, method, operation in schema_operations(schema)}


@pytest.mark.django_db
def test_every_409_answered_through_the_api_is_in_that_operations_schema(schema, tenant_a):
    admin = tenant_a.key_client("admin")
    gallery = ready_gallery_without_worker(tenant_a)
    started = admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk, "epochs": 3}, format="json")
    assert started.status_code == 202, started.json()  # queued; its worker is asked only once the test commits
    job_url = f"/api/v1/fine-tune-jobs/{started.json()['id']}/"
    answers = {
        "fine_tune_jobs_create": admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json"),
        "models_rollback_create": admin.post("/api/v1/models/rollback/"),  # never switched: nothing to go back to
    }
    assert admin.post(job_url + "cancel/").json()["state"] == "cancelled"
    answers["fine_tune_jobs_cancel_create"] = admin.post(job_url + "cancel/")
    answers["fine_tune_jobs_promote_create"] = admin.post(job_url + "promote/", {}, format="json")

    operations = _operations(schema)
    assert {operation_id for operation_id, (_, _, operation) in operations.items()
            if "409" in operation["responses"]} == set(answers)
    for operation_id, response in answers.items():
        assert response.status_code == 409, (operation_id, response.content)
        code = response.json()["error"]["code"]
        documented = operations[operation_id][2]["responses"]["409"]
        assert f"`{code}`" in documented["description"], operation_id
        media = documented["content"]["application/json"]
        assert media["schema"] == ENVELOPE and media["example"]["error"]["code"] == code, operation_id


def _platform_errors(base: type = PlatformError) -> list[type[PlatformError]]:
    get_resolver().url_patterns  # the URLconf imports every api and view module, and so every typed error
    return [error for sub in base.__subclasses__() for error in (sub, *_platform_errors(sub))]


def test_every_conflict_error_is_documented_or_named_as_outside_the_api(schema):
    conflicts = {error.code for error in _platform_errors() if error.http_status == 409}
    assert {"job_already_running", "invalid_job_state", "image_not_ready"} <= conflicts  # the scan finds them
    documented = " ".join(operation["responses"]["409"]["description"] for _, _, operation in _operations(schema).values()
                          if "409" in operation["responses"])
    undocumented = {code for code in conflicts if f"`{code}`" not in documented}
    assert undocumented == set(NOT_IN_THE_API)
    assert all(f"`{code}`" in ERROR_RESPONSES["409"][1] for code in conflicts - set(NOT_IN_THE_API))


@pytest.mark.django_db
def test_every_request_body_can_be_refused_as_too_large_or_of_a_wrong_type_as_documented(schema, tenant_a):
    """The parsers refuse any body's media type they do not read (415) and any body over the request limit (413),
    whatever the operation; each body's operation documents both."""
    admin = tenant_a.key_client("admin")
    gallery = ready_gallery_without_worker(tenant_a)
    image = ReferenceImage.objects.for_tenant(tenant_a.tenant).first()
    job = admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json").json()
    photo = base64.b64encode(product_photo((210, 30, 30))).decode()
    recognition = admin.post("/api/v1/recognitions/", {"image_base64": photo, "run_async": True}, format="json")
    assert recognition.status_code == 202, recognition.json()
    ids = {"galleries": gallery.pk, "products": image.product_id, "reference-images": image.pk,
           "recognitions": recognition.json()["id"], "fine-tune-jobs": job["id"]}
    refused = {}
    for operation_id, (method, path, operation) in _operations(schema).items():
        if "requestBody" not in operation:
            continue
        assert {"413", "415"} <= set(operation["responses"]), operation_id
        resource = path.removeprefix("/api/v1/").split("/")[0]
        url = path.replace("{id}", str(ids.get(resource))).replace("{public_id}", str(ids.get(resource)))
        wrong_type = getattr(admin, method)(url, data="name=x", content_type="text/plain")
        with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1_000):
            too_large = getattr(admin, method)(url, data=json.dumps({"name": "x" * 2_000}), content_type="application/json")
        refused[operation_id] = [(response.status_code, response.json()["error"]["code"]) for response in (wrong_type, too_large)]
    assert len(refused) >= 14
    assert {operation_id: answers for operation_id, answers in refused.items()
            if answers != [(415, "unsupported_media_type"), (413, "request_too_large")]} == {}
