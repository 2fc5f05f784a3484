"""Calling the work queue's PostgreSQL functions (migration tasks 0002_queue_functions): one
statement in, the outcome, a fact and ready model instances out, with no per-call introspection
(the client's CPU per call is what a busy queue pays for)."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection, models

from hol.actors import AGENT_GROUP, actor_label, is_system

# Each function's arguments (cast, so the call never depends on how a value was quoted) and the
# composite columns of its result that hold a row of a model's table.
SIGNATURES = {
    "hol_work_order_claim": (
        ("uuid", "integer", "text", "text", "text", "timestamptz", "timestamptz", "text[]"),
        ("work_order", "task"),
    ),
    "hol_work_order_complete": (
        ("uuid", "integer", "text", "text", "text", "timestamptz", "text", "text[]", "text[]", "text[]"),
        ("work_order",),
    ),
}


def actor_params(actor: Any) -> list:
    """id (None for HOL itself), label, type when known without a query, and the agent group
    (the function reads a user's type from its groups, as hol.actors does)."""
    system = is_system(actor)
    return [None if system else actor.pk, actor_label(actor), "system" if system else None, AGENT_GROUP]


@cache
def _statement(function: str, row_models: tuple[type[models.Model], ...]) -> str:
    arg_types, composites = SIGNATURES[function]
    columns = ["outcome", "fact"]
    for composite, model in zip(composites, row_models, strict=True):
        columns += [f"({composite}).{field.column}" for field in model._meta.concrete_fields]
    args = ", ".join(f"%s::{arg_type}" for arg_type in arg_types)
    return f"SELECT {', '.join(columns)} FROM {function}({args})"


@cache
def _converters(model: type[models.Model]) -> list[tuple[int, models.Field, list]]:
    fields = enumerate(model._meta.concrete_fields)
    return [(i, field, converters) for i, field in fields if (converters := field.get_db_converters(connection))]


def call_queue_function(
    function: str, params: list, row_models: tuple[type[models.Model], ...]
) -> tuple[str, Any, list[models.Model | None]]:
    """Run one queue function; return its outcome, its fact and, per model of `row_models`, the
    instance built from the row it returned (None for a NULL row)."""
    params = [[str(status) for status in value] if isinstance(value, tuple) else value for value in params]
    with connection.cursor() as cursor:
        cursor.execute(_statement(function, row_models), params)
        row = cursor.fetchone()
    instances, offset = [], 2
    for model in row_models:
        width = len(model._meta.concrete_fields)
        instances.append(_instance(model, list(row[offset : offset + width])))
        offset += width
    return row[0], row[1], instances


def _instance(model: type[models.Model], values: list) -> models.Model | None:
    if values[0] is None:  # the primary key: no row
        return None
    for index, field, converters in _converters(model):
        for convert in converters:
            values[index] = convert(values[index], field, connection)
    return model.from_db(connection.alias, None, values)
