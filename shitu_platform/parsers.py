"""Request parsing and paging with hard limits: hostile bodies and parameters get a 400, never a 500."""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions, pagination, parsers


class SafeJSONParser(parsers.JSONParser):
    """JSON whose nesting exhausts the parser's recursion is malformed input, not a server error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError("JSON nested too deeply") from error


class BoundedLimitOffsetPagination(pagination.LimitOffsetPagination):
    max_limit = 500
