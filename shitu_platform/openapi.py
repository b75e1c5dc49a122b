"""OpenAPI additions: the error envelope every error uses, and descriptions that say what an operation does.

drf-spectacular falls back to the first docstring in a view's MRO, so views without their own docstring were
described by the tenant-scoping mixin's note for developers; `lib_doc_excludes` stops that, and the hook gives
the standard actions a description of their own."""
from __future__ import annotations

import re
from typing import Any

from drf_spectacular.plumbing import get_lib_doc_excludes

from shitu_platform.tenancy.scoping import TenantScopedAPIMixin

# status -> (component name, when it is answered)
ERROR_RESPONSES = {
    "400": ("BadRequest", "The request is invalid (`invalid_request` with field errors in `details`, or a specific code)."),
    "401": ("Unauthenticated", "No or unknown credentials (`not_authenticated`, `authentication_failed`)."),
    "403": ("Forbidden", "The caller's role does not allow this (`permission_denied`)."),
    "404": ("NotFound", "No such object in the caller's tenant (`not_found`); another tenant's objects are 404 too."),
    "413": ("PayloadTooLarge", "The body or image is over a size limit (`request_too_large`, `image_too_large`, `file_too_large`)."),
    "415": ("UnsupportedMediaType", "The body or image format is not accepted (`unsupported_media_type`, `unsupported_image_format`)."),
    "429": ("RateLimited", "Over the tenant's rate limit or quota (`rate_limited`, `quota_exceeded`); see `Retry-After`."),
    "503": ("ServiceUnavailable", "A backing service (database, queue, storage, model) is unavailable; see `Retry-After`."),
}
_ACTION_DESCRIPTIONS = {
    "list": "The caller's tenant's {plural}, paginated.",
    "create": "Create a {singular} in the caller's tenant.",
    "retrieve": "One {singular} of the caller's tenant.",
    "update": "Replace a {singular}'s writable fields.",
    "partial_update": "Change some of a {singular}'s writable fields.",
    "destroy": "Delete a {singular}.",
}


def lib_doc_excludes() -> list[type]:
    """SPECTACULAR_SETTINGS GET_LIB_DOC_EXCLUDES: our base classes' docstrings document code, not the API."""
    return [*get_lib_doc_excludes(), TenantScopedAPIMixin]


def _error_components() -> tuple[dict[str, Any], dict[str, Any]]:
    schemas = {
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable; clients switch on it", "example": "invalid_request"},
                "message": {"type": "string", "description": "for people"},
                "details": {"description": "field errors or context, when there are any"},
            },
        },
        "ErrorEnvelope": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/Error"}},
            "description": 'Every error answer: `{"error": {"code", "message", "details"}}`.',
        },
    }
    retry_after = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
    responses = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
        }
        if status in ("429", "503"):
            response["headers"] = retry_after
        responses[name] = response
    return schemas, responses


def _error_statuses(path: str, operation: dict[str, Any]) -> list[str]:
    """Which errors an operation can answer: every one is authenticated, role-checked, rate-limited, backed by services."""
    statuses = ["401", "403", "429", "503"]
    if "requestBody" in operation or operation.get("parameters"):
        statuses.append("400")
    if "{" in path:
        statuses.append("404")
    if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
        statuses += ["413", "415"]
    return sorted(statuses)


def _action_description(path: str, action: str) -> str:
    """For the standard viewset actions, named after the path's resource (`/reference-images/{id}/`)."""
    resource = [part for part in path.strip("/").split("/") if part and not part.startswith("{")]
    plural = resource[-1].replace("-", " ")
    singular = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
    return _ACTION_DESCRIPTIONS[action].format(plural=plural, singular=singular)


def _path_shape(path: str) -> str:
    """The generator renames path parameters (`{pk}` becomes `{id}`) after it lists endpoints."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _standard_actions(generator: Any) -> dict[tuple[str, str], str]:
    """(path shape, method) -> viewset action, for the actions `_ACTION_DESCRIPTIONS` knows."""
    actions = {}
    for path, _regex, method, callback in getattr(generator, "endpoints", None) or []:
        action = (getattr(callback, "actions", None) or {}).get(method.lower())
        if action in _ACTION_DESCRIPTIONS:
            actions[_path_shape(path), method.lower()] = action
    return actions


def _replace_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF) and ref[len(_SCHEMA_REF):] in renamed:
            return {**node, "$ref": _SCHEMA_REF + renamed[ref[len(_SCHEMA_REF):]]}
        return {key: _replace_refs(value, renamed) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_refs(value, renamed) for value in node]
    return node


_SCHEMA_REF = "#/components/schemas/"


def _undouble_request_names(result: dict[str, Any]) -> dict[str, Any]:
    """COMPONENT_SPLIT_REQUEST names a request serializer's body `RecognitionRequestRequest`; one `Request` is enough."""
    schemas = result.get("components", {}).get("schemas", {})
    renamed = {name: name.removesuffix("Request") for name in schemas
               if name.endswith("RequestRequest") and name.removesuffix("Request") not in schemas}
    if not renamed:
        return result
    result = _replace_refs(result, renamed)
    result["components"]["schemas"] = {renamed.get(name, name): schema for name, schema in schemas.items()}
    return result


def _binary_properties(schema: dict[str, Any]) -> list[str]:
    return [name for name, prop in schema.get("properties", {}).items() if prop.get("format") == "binary"]


def _one_media_type_per_body(result: dict[str, Any]) -> None:
    """Generated clients (openapi-python-client) choose the media type by the body's class, so one schema under
    several media types sends a JSON, a form and a multipart body at once; and with more than one media type they
    set `Content-Type: multipart/form-data` themselves, without the boundary (openapi-python-client issue #947).
    So a body with files is documented as multipart only, any other as JSON only; the API still parses all three."""
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            if len(content) < 2:
                continue
            refs = {media.get("schema", {}).get("$ref", "") for media in content.values()}
            has_files = any(_binary_properties(schemas.get(ref[len(_SCHEMA_REF):], {})) for ref in refs)
            keep = "multipart/form-data" if has_files else "application/json"
            if keep in content:
                for media_type in [media for media in content if media != keep]:
                    del content[media_type]


def postprocess_errors_and_descriptions(result: dict[str, Any], generator: Any, request: Any, public: bool,
                                        **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS entry: error components and responses, missing descriptions,
    request bodies a generated client can send."""
    result = _undouble_request_names(result)
    _one_media_type_per_body(result)
    schemas, responses = _error_components()
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(schemas)
    components.setdefault("responses", {}).update(responses)
    actions = _standard_actions(generator)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            action = actions.get((_path_shape(path), method))
            if not operation.get("description") and action:
                operation["description"] = _action_description(path, action)
            for status in _error_statuses(path, operation):
                operation["responses"].setdefault(status, {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"})
    return result
