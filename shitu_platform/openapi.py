"""OpenAPI additions: the error envelope every error uses, descriptions that say what an operation does, the quotas
in force, request bodies a generated client can send (tests/test_generated_client.py), and an example of each
operation's body and answer (shitu_platform.openapi_examples).

drf-spectacular falls back to the first docstring in a view's MRO, so views without their own docstring were
described by the tenant-scoping mixin's note for developers; `lib_doc_excludes` stops that, and the hook gives
the standard actions a description of their own."""
from __future__ import annotations

import re
from typing import Any

from drf_spectacular.plumbing import get_lib_doc_excludes
from drf_spectacular.utils import OpenApiResponse

from shitu_platform.errors import PlatformError
from shitu_platform.openapi_examples import EXAMPLES
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin

# status -> (component name, when it is answered)
ERROR_RESPONSES = {
    "400": ("BadRequest", "The request is invalid (`invalid_request` with field errors in `details`, or a specific code)."),
    "401": ("Unauthenticated", "No or unknown credentials (`not_authenticated`, `authentication_failed`)."),
    "403": ("Forbidden", "The caller's role does not allow this (`permission_denied`)."),
    "404": ("NotFound", "No such object in the caller's tenant (`not_found`); another tenant's objects are 404 too."),
    "409": ("Conflict", "The current state does not allow this now: a fine-tune is already running "
                        "(`job_already_running`), or the job or model is not in a state for it (`invalid_job_state`)."),
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


def error_responses(*errors: type[PlatformError]) -> dict[int, OpenApiResponse]:
    """`extend_schema(responses={..., **error_responses(InvalidJobState)})`: the answers a view's own typed errors add
    to those every operation of its shape can answer (`_error_statuses`), such as a 409. Declared on the view that
    calls the raising service rather than listed here by operationId, and keyed by each error's own `http_status`
    and `code`, so a renamed operation or a changed status cannot leave the schema behind; the hook adds the
    envelope (tests/test_api_schema_errors.py provokes each declared one and wants every 409 error declared)."""
    described: dict[int, list[str]] = {}
    for error in errors:
        what = _words(error.__name__)
        described.setdefault(error.http_status, []).append(
            f"`{error.code}`" if what == error.code.replace("_", " ") else f"`{error.code}` ({what})")
    return {status: OpenApiResponse(description=f"{_words(ERROR_RESPONSES[str(status)][0]).capitalize()}: "
                                                f"{', '.join(dict.fromkeys(texts))}.")
            for status, texts in described.items()}


def _words(class_name: str) -> str:
    """`NoPreviousModel` -> `no previous model`."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()


def _error_statuses(path: str, operation: dict[str, Any]) -> list[str]:
    """Which errors any operation of this shape can answer: every one is authenticated, role-checked, rate-limited,
    backed by services; a body can be too big or of a type the parsers refuse. An operation's own errors beyond
    these are declared on its view (`error_responses`)."""
    statuses = ["401", "403", "429", "503"]
    if "requestBody" in operation or operation.get("parameters"):
        statuses.append("400")
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses += ["413", "415"]
    return sorted(statuses)


def _envelope_for_declared_errors(operation: dict[str, Any]) -> None:
    """A response declared with `error_responses` has the operation's own description and, from here, the envelope."""
    for status, response in operation["responses"].items():
        if status in ERROR_RESPONSES and "$ref" not in response and "content" not in response:
            response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}


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


_SCHEMA_REF = "#/components/schemas/"


def _replace_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF) and ref[len(_SCHEMA_REF):] in renamed:
            return {**node, "$ref": _SCHEMA_REF + renamed[ref[len(_SCHEMA_REF):]]}
        return {key: _replace_refs(value, renamed) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_refs(value, renamed) for value in node]
    return node


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
    """The file fields: a binary string, or an array of them (several photos in one upload)."""
    return [name for name, prop in schema.get("properties", {}).items()
            if "binary" in (prop.get("format"), prop.get("items", {}).get("format"))]


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


_TENANT_LIMITS = ("requests_per_minute", "recognitions_per_minute", "max_images_per_gallery")


def _mib(size: int) -> str:
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2)):
        if size % scale == 0:
            return f"{size // scale:,} {unit}"
    return f"{size:,} bytes"


def _tenant_limits(tenant: Any | None) -> dict[str, int]:
    """The tenant's own limits, or the defaults a new tenant gets."""
    from shitu_platform.tenancy.models import Tenant

    if tenant is not None:
        return {name: getattr(tenant, name) for name in _TENANT_LIMITS}
    return {name: Tenant._meta.get_field(name).get_default() for name in _TENANT_LIMITS}


def _limits_description(request: Any) -> tuple[str, str, str]:
    """(info section, 429 description, 413 description): the quotas in force for the caller, from the tenant row
    and settings, so the schema cannot drift from what the throttle and the upload checks enforce."""
    from django.conf import settings

    from shitu_platform.tenancy.context import tenant_context

    context = tenant_context(request) if request is not None and getattr(request, "user", None) is not None \
        and request.user.is_authenticated else None
    limits = _tenant_limits(context.tenant if context else None)
    whose = f"Your tenant ({context.tenant.name})" if context else "A new tenant (defaults)"
    rates = (f"{limits['requests_per_minute']:,} API requests per minute, and apart from them "
             f"{limits['recognitions_per_minute']:,} recognitions per minute (the POSTs to `/api/v1/recognitions/`, "
             "recognise and feedback, count here instead)")
    sizes = (f"an image {_mib(settings.SHITU_MAX_IMAGE_BYTES)} and {settings.SHITU_MAX_IMAGE_PIXELS:,} pixels "
             f"(`image_too_large`); an import zip {_mib(settings.SHITU_MAX_IMPORT_UPLOAD_BYTES)} as sent "
             f"(`file_too_large`) and {_mib(settings.SHITU_MAX_IMPORT_BYTES)} unpacked; a request's fields besides "
             f"files {_mib(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)} (`request_too_large`)")
    info = (
        "\n\n## Quotas and rate limits\n\n"
        f"{whose}: {rates}; {limits['max_images_per_gallery']:,} reference images per gallery. "
        "Limits are per tenant, shared by all its keys and users, in one-minute windows; an operator changes them "
        "on the tenant (admin). Over a rate: 429 `rate_limited` with `Retry-After` (seconds). A full gallery: 429 "
        "`quota_exceeded`, `details.limit` holds the quota.\n\n"
        f"Sizes, for every tenant: {sizes}; over one: 413."
    )
    too_many = (f"Over the tenant's rate limit or quota (`rate_limited`, `quota_exceeded`); see `Retry-After`. "
                f"{whose}: {rates}; {limits['max_images_per_gallery']:,} reference images per gallery.")
    too_large = f"The body or image is over a size limit: {sizes}."
    return info, too_many, too_large


def _add_examples(operation: dict[str, Any]) -> None:
    """The operation's examples, by operationId: "request" under its body, a status under that answer's body."""
    examples = EXAMPLES.get(operation.get("operationId", ""), {})
    bodies = [("request", operation.get("requestBody", {})), *operation["responses"].items()]
    for key, body in bodies:
        for media in body.get("content", {}).values() if key in examples else ():
            media["example"] = examples[key]


def postprocess_errors_and_descriptions(result: dict[str, Any], generator: Any, request: Any, public: bool,
                                        **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS entry: error components and responses, missing descriptions,
    request bodies a generated client can send, examples."""
    result = _undouble_request_names(result)
    _one_media_type_per_body(result)
    schemas, responses = _error_components()
    info, too_many, too_large = _limits_description(request)
    result.setdefault("info", {})["description"] = result.get("info", {}).get("description", "") + info
    responses["RateLimited"]["description"] = too_many
    responses["PayloadTooLarge"]["description"] = too_large
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
            _envelope_for_declared_errors(operation)
            for status in _error_statuses(path, operation):
                operation["responses"].setdefault(status, {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"})
            _add_examples(operation)
    return result
