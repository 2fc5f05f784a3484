"""Plumbing the DRF views of every app share."""

from __future__ import annotations

from typing import Any


def validated(serializer_class: type, data: Any) -> dict:
    """Validate request data with `serializer_class`; a 400 `{code, message}` when it is wrong."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
