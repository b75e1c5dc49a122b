"""Every operation of the API schema says what it does and shows an example body and answer, each example is valid
against its schema (strictly: no key the schema lacks, every required key present), and real answers have the
examples' shape."""
from __future__ import annotations

import base64
import copy
from typing import Any

import jsonschema
import pytest

from shitu_platform.openapi_examples import EXAMPLES, RECOGNITION_DONE
from tests.support.images import product_photo
from tests.support.openapi import generated_schema, schema_operations


@pytest.fixture(scope="module")
def schema() -> dict:
    return generated_schema()


def _operations(schema: dict):
    for path, method, operation in schema_operations(schema):
        yield f"{method.upper()} {path}", operation


def _strict(node: Any) -> Any:
    """An OpenAPI 3.0 schema as a strict JSON Schema: `nullable` allows null, an object allows only its properties."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: _strict(value) for key, value in node.items() if key not in ("nullable", "example")}
    if "properties" in strict and "additionalProperties" not in strict:
        strict["additionalProperties"] = False
    return {"anyOf": [strict, {"type": "null"}]} if node.get("nullable") else strict


def _validator(schema: dict, body_schema: dict, *, files_optional: bool = False) -> jsonschema.Draft7Validator:
    components = _strict(schema["components"])
    if files_optional:  # a multipart example shows the fields besides the files, which it cannot hold
        name = body_schema["$ref"].rsplit("/", 1)[-1]
        body = components["schemas"][name]
        binary = {key for key, prop in body["properties"].items() if "binary" in (prop.get("format"), prop.get("items", {}).get("format"))}
        body["required"] = [key for key in body.get("required", []) if key not in binary]
    root = {**_strict(body_schema), "components": components}
    return jsonschema.Draft7Validator(root, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _examples(schema: dict):
    """(operation, "request" or status, example, validator) for every example placed in the schema."""
    for name, operation in _operations(schema):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in media:
                yield name, "request", media["example"], _validator(
                    schema, media["schema"], files_optional=media_type == "multipart/form-data")
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                if "example" in media:
                    yield name, status, media["example"], _validator(schema, media["schema"])


def test_every_operation_has_a_description_and_each_write_its_own(schema):
    vague = [name for name, operation in _operations(schema) if len(operation.get("description", "").split()) < 3]
    assert vague == []
    writes: dict[str, list[str]] = {}
    for name, operation in _operations(schema):
        if not name.startswith("GET "):  # a viewset's docstring is not what its create, revoke or cancel does
            writes.setdefault(operation["description"], []).append(name)
    assert [names for names in writes.values() if len(names) > 1] == []


def test_every_operation_has_examples_of_its_json_body_and_success_answers(schema):
    missing = []
    for name, operation in _operations(schema):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if media_type == "application/json" and "example" not in media:
                missing.append((name, "request"))
        for status, response in operation["responses"].items():
            if status.startswith("2") and response.get("content") and not all("example" in m for m in response["content"].values()):
                missing.append((name, status))
    assert missing == []


def test_every_example_belongs_to_an_operation_and_an_answer_it_has(schema):
    """An example keyed by a renamed operation or a status the operation does not answer would silently vanish."""
    operations = {operation["operationId"]: operation for _, operation in _operations(schema)}
    stray = [(operation_id, key) for operation_id, examples in EXAMPLES.items() for key in examples
             if operation_id not in operations
             or (key == "request" and "requestBody" not in operations[operation_id])
             or (key != "request" and key not in operations[operation_id]["responses"])]
    assert stray == []


def test_every_example_is_valid_against_its_schema(schema):
    checked, invalid = 0, []
    for name, key, example, validator in _examples(schema):
        checked += 1
        invalid += [(name, key, "/".join(map(str, error.absolute_path)), error.message) for error in validator.iter_errors(example)]
    assert invalid == []
    assert checked >= 45  # every operation has at least one; the upload forms and 202s add more


def test_a_misspelled_or_missing_key_fails_the_check(schema):
    media = schema["paths"]["/api/v1/recognitions/{public_id}/"]["get"]["responses"]["200"]["content"]["application/json"]
    validator = _validator(schema, media["schema"])
    assert validator.is_valid(RECOGNITION_DONE)
    misspelled = copy.deepcopy(RECOGNITION_DONE)
    misspelled["objects"][0]["matches"][0]["acepted"] = misspelled["objects"][0]["matches"][0].pop("accepted")
    missing = {key: value for key, value in RECOGNITION_DONE.items() if key != "timings_ms"}
    wrong_type = {**RECOGNITION_DONE, "index_version": "41"}
    for body in (misspelled, missing, wrong_type):
        assert not validator.is_valid(body)


def _same_shape(real: Any, example: Any) -> bool:
    """Objects with the same keys, recursively; a list by its first items; null (a missing object) fits any."""
    if isinstance(real, dict) and isinstance(example, dict):
        return set(real) == set(example) and all(_same_shape(real[key], example[key]) for key in real)
    if isinstance(real, list) and isinstance(example, list):
        return not real or not example or _same_shape(real[0], example[0])
    return real is None or example is None or type(real) is not dict and type(example) is not dict


def _response_validator(schema: dict, operation_id: str, status: str) -> jsonschema.Draft7Validator:
    operation = next(operation for _, operation in _operations(schema) if operation["operationId"] == operation_id)
    return _validator(schema, operation["responses"][status]["content"]["application/json"]["schema"])


@pytest.mark.django_db
def test_real_answers_are_valid_and_shaped_like_the_examples(schema, tenant_a):
    client = tenant_a.key_client("admin")
    gallery = client.post("/api/v1/galleries/", EXAMPLES["galleries_create"]["request"], format="json")
    request = {**EXAMPLES["products_create"]["request"], "gallery": gallery.json()["id"]}
    product = client.post("/api/v1/products/", request, format="json")
    api_key = client.post("/api/v1/api-keys/", EXAMPLES["api_keys_create"]["request"], format="json")
    photo = base64.b64encode(product_photo((210, 30, 30))).decode()
    recognition = client.post("/api/v1/recognitions/", {"image_base64": photo, "run_async": True}, format="json")
    answers = {
        ("galleries_create", "201"): gallery, ("products_create", "201"): product, ("api_keys_create", "201"): api_key,
        ("tenant_retrieve", "200"): client.get("/api/v1/tenant/"),
        ("members_list", "200"): tenant_a.client("owner").get("/api/v1/members/"),
        ("recognitions_create", "202"): recognition,  # queued: no worker runs here
        ("galleries_list", "200"): client.get("/api/v1/galleries/"),
        ("models_active_retrieve", "200"): client.get("/api/v1/models/active/"),  # never switched: the default
    }
    for (operation_id, status), response in answers.items():
        assert response.status_code == int(status), (operation_id, response.json())
        body = response.json()
        errors = [(list(error.absolute_path), error.message)
                  for error in _response_validator(schema, operation_id, status).iter_errors(body)]
        assert errors == [], operation_id
        assert _same_shape(body, EXAMPLES[operation_id][status]), (operation_id, body)
