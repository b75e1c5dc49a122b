"""The schema as a client generator sees it, and its operations, for the API-docs tests."""
from __future__ import annotations

from collections.abc import Iterator

from drf_spectacular.generators import SchemaGenerator


def generated_schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def schema_operations(schema: dict) -> Iterator[tuple[str, str, dict]]:
    """(path, method, operation) for every operation of `schema`."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation
