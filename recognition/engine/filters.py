"""Attribute filters for recognition: ``brand=Acme AND (size=1L OR size=2L)``, an AND of OR-groups.

The grammar follows Google Cloud Vision Product Search's ``filter``: each term is ``key=value``; terms inside
parentheses are joined by ``OR``, groups by ``AND``; a bare term is a group of one. Keys are letters (any script), digits,
``_``, ``-`` and ``.``; a value is a run of characters without spaces, parentheses, ``=`` or quotes, or any text
in double quotes (``label="Green Tea 500ml"``, ``\\"`` and ``\\\\`` escaped). Matching is exact and case-sensitive
on the product's attribute text; an attribute holding a list matches when any element does.

The filter decides which gallery vectors may be searched at all (see galleries' filtered search), so a filtered
query ranks only matching products instead of dropping results after the top-k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from .errors import EngineError

MAX_FILTER_LENGTH = 1000
MAX_TERMS = 50

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<term>(?P<key>[\w.\-]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s()="]+)))
      | (?P<word>AND|OR)(?![^\s()])
    )""",
    re.VERBOSE,
)


class InvalidFilter(EngineError):
    """The filter text does not parse; the message says where."""

    code = "invalid_filter"


@dataclass(frozen=True)
class AttributeFilter:
    """``groups``: an AND of groups, each an OR of (key, value) terms."""

    groups: tuple[tuple[tuple[str, str], ...], ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether a product with these attributes passes."""
        return all(any(_has(attributes, key, value) for key, value in group) for group in self.groups)

    def __str__(self) -> str:
        def term(key: str, value: str) -> str:
            bare = re.fullmatch(r'[^\s()="]+', value) and value not in ("AND", "OR")
            return f"{key}={value}" if bare else '{}="{}"'.format(key, value.replace("\\", "\\\\").replace('"', '\\"'))

        parts = [term(*group[0]) if len(group) == 1 else "(" + " OR ".join(term(*t) for t in group) + ")"
                 for group in self.groups]
        return " AND ".join(parts)


def _has(attributes: Mapping[str, Any], key: str, value: str) -> bool:
    held = attributes.get(key)
    if isinstance(held, (list, tuple)):
        return any(_text(item) == value for item in held)
    return held is not None and _text(held) == value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tokens(text: str) -> Iterator[tuple[str, Any, int]]:
    position = 0
    while position < len(text):
        if not text[position:].strip():
            return
        found = _TOKEN.match(text, position)
        if found is None:
            rest = text[position:]
            where = position + len(rest) - len(rest.lstrip())
            raise InvalidFilter(f"cannot read the filter at character {where + 1}: {text[where:where + 20]!r}; "
                                "write key=value terms joined by AND, OR-groups in parentheses")
        kind = found.lastgroup if found.lastgroup in ("lparen", "rparen", "word") else "term"
        if kind == "term":
            value = found.group("quoted")
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else found.group("bare")
            yield kind, (found.group("key"), value), found.start("term")
        else:
            yield kind, found.group(found.lastgroup), found.start(found.lastgroup)
        position = found.end()


def parse_filter(text: str) -> AttributeFilter | None:
    """The filter in ``text``, or None for an empty one; raises InvalidFilter with the reason."""
    if not isinstance(text, str):
        raise InvalidFilter("the filter must be text")
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"the filter is {len(text)} characters long; at most {MAX_FILTER_LENGTH}")
    tokens = list(_tokens(text))
    if not tokens:
        return None
    groups: list[tuple[tuple[str, str], ...]] = []
    index = 0

    def expect_term() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens) or tokens[index][0] != "term":
            raise InvalidFilter(f"expected key=value at {_where(tokens, index)}")
        term = tokens[index][1]
        index += 1
        return term

    while True:
        if index < len(tokens) and tokens[index][0] == "lparen":
            index += 1
            group = [expect_term()]
            while index < len(tokens) and tokens[index][:2] == ("word", "OR"):
                index += 1
                group.append(expect_term())
            if index >= len(tokens) or tokens[index][0] != "rparen":
                raise InvalidFilter(f"expected OR or ')' at {_where(tokens, index)}")
            index += 1
            groups.append(tuple(group))
        else:
            groups.append((expect_term(),))
        if index >= len(tokens):
            break
        if tokens[index][:2] != ("word", "AND"):
            raise InvalidFilter(f"expected AND at {_where(tokens, index)} (OR only inside parentheses)")
        index += 1
    if sum(len(group) for group in groups) > MAX_TERMS:
        raise InvalidFilter(f"the filter has more than {MAX_TERMS} terms")

    return AttributeFilter(tuple(groups))


def normalized_filter(text: str) -> str:
    """The filter's canonical text (what a recognition keeps), "" for none; raises InvalidFilter like parse_filter."""
    parsed = parse_filter(text)
    return "" if parsed is None else str(parsed)


def _where(tokens: list[tuple[str, Any, int]], index: int) -> str:
    return f"character {tokens[index][2] + 1}" if index < len(tokens) else "the end"


__all__ = ["AttributeFilter", "InvalidFilter", "MAX_FILTER_LENGTH", "MAX_TERMS", "normalized_filter", "parse_filter"]
