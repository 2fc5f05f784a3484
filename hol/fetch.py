"""The one way services fetch a row by id, locked or not."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from django.db import connection, models

from hol.errors import NotFound

M = TypeVar("M", bound=models.Model)


def parse_uuid(value: Any, *, what: str) -> UUID:
    """An id from a client: a UUID, or NotFound (a malformed id names no row)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(f"{what} {value} not found") from None


def get_locked(
    queryset: models.QuerySet[M] | models.Manager[M],
    pk: Any,
    *,
    what: str,
    lock: bool = True,
    skip_locked: bool = False,
    of: tuple[str, ...] = (),
    or_none: bool = False,
) -> M | None:
    """Fetch one row by primary key, `SELECT … FOR UPDATE` unless `lock=False`.

    The id is parsed once (UUID primary keys); a malformed or missing id raises NotFound, and so
    does a row another transaction holds when `skip_locked` is set (Beat passes over it). With
    `or_none`, None instead of NotFound: for a row that may rightly be gone or moved on."""
    model = queryset.model
    try:
        if isinstance(model._meta.pk, models.UUIDField):
            pk = parse_uuid(pk, what=what)
        qs = queryset.all()
        if lock:
            skip_locked = skip_locked and connection.features.has_select_for_update_skip_locked
            qs = qs.select_for_update(skip_locked=skip_locked, of=of)
        try:
            return qs.get(pk=pk)
        except (model.DoesNotExist, ValueError, TypeError):
            raise NotFound(f"{what} {pk} not found") from None
    except NotFound:
        if or_none:
            return None
        raise
