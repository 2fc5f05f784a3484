"""Plumbing the DRF views of every app share."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def validated(serializer_class: type, data: Any) -> dict:
    """Validate request data with `serializer_class`; a 400 `{code, message}` when it is wrong."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


MAX_JSON_DEPTH = 32


def ensure_storable(value: Any, *, depth: int = 0) -> None:
    """JSON that every database HOL runs on can store: no NUL character (PostgreSQL's text and jsonb
    refuse it) and nesting at most MAX_JSON_DEPTH deep (deeper structures exhaust the encoders'
    recursion). A 400, never a 500."""
    if depth > MAX_JSON_DEPTH:
        raise ParseError(f"JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ParseError("text must not contain the NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            ensure_storable(key, depth=depth + 1)
            ensure_storable(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            ensure_storable(item, depth=depth + 1)


class StorableJSONParser(JSONParser):
    """The API's JSON parser: what it accepts can be stored (see `ensure_storable`)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON is nested too deeply") from None
        ensure_storable(data)
        return data
