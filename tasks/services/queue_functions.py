"""Claim and complete on PostgreSQL: one call of the functions that migration
tasks 0002_queue_functions installs. One statement in; the outcome, a fact and ready model
instances out, with no per-call introspection (the client's CPU per call is what a busy queue pays
for). A refusal is turned into the error the ORM path of tasks.services.queue raises, by the same
helpers, from the facts the function returns."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from django.db import connection, models

from audit.services import audit_seal_after_commit
from hol.actors import AGENT_GROUP, actor_label, is_system
from hol.errors import Conflict, NotFound
from hol.transitions import ensure_transition
from tasks.models import Task, Worker, WorkOrder
from tasks.services.permissions import ensure_holder, ensure_worker_owner
from tasks.services.transitions import TASK_TRANSITIONS, WORK_ORDER_TRANSITIONS

# The statuses each hot-path change starts from (the ORM path of tasks.services.queue uses the same).
CLAIMABLE_TASK = (Task.Status.QUEUED,)
COMPLETABLE = tuple(s for s in WorkOrder.HELD if WorkOrder.Status.COMPLETED in WORK_ORDER_TRANSITIONS.get(s, ()))
RUNNING_TASK = (Task.Status.IN_PROGRESS,)


def _literal(value: str | tuple[str, ...]) -> str:
    """A constant argument written into the statement once (no quoting work per call); only plain
    names (statuses, the group name) qualify."""
    names = value if isinstance(value, tuple) else (value,)
    if not all(re.fullmatch(r"[a-z_]+", str(name)) for name in names):
        raise ValueError(f"not a plain name: {value!r}")
    return f"'{{{','.join(map(str, names))}}}'::text[]" if isinstance(value, tuple) else f"'{value}'::text"


# Each function's arguments, in order: a type for a value passed per call (cast, so the call never
# depends on how it was quoted) or a constant; then the composite columns of its result that hold
# a row of a model's table. The per-call values are the target's id, actor_params(), then the rest.
SIGNATURES = {
    "hol_work_order_claim": (
        ("uuid", "integer", "text", "text", _literal(AGENT_GROUP), "timestamptz", "timestamptz",
         _literal(CLAIMABLE_TASK)),
        ("work_order", "task"),
    ),
    "hol_work_order_complete": (
        ("uuid", "integer", "text", "text", _literal(AGENT_GROUP), "timestamptz", "text", _literal(COMPLETABLE),
         _literal(WorkOrder.HELD), _literal(RUNNING_TASK)),
        ("work_order",),
    ),
}  # fmt: skip


def ensure_may_finish(actor: Any, work_order: WorkOrder, new_status: str) -> None:
    ensure_holder(actor, work_order)
    ensure_transition(work_order.status, new_status, WORK_ORDER_TRANSITIONS, what="work order")


def refuse_task_status(current: str, status: str) -> None:
    """Raise the Conflict for a task that is not where its work says it should be."""
    ensure_transition(current, status, TASK_TRANSITIONS, what="task")
    raise Conflict(f"task is {current}; its work cannot make it {status}", code="invalid_transition")


def claim_in_one_statement(
    *, actor: Any, worker_id: UUID, now: datetime, lease_expires_at: datetime
) -> WorkOrder | None:
    outcome, fact, (work_order, task) = call_queue_function(
        "hol_work_order_claim",
        [worker_id, *actor_params(actor), now, lease_expires_at],
        (WorkOrder, Task),
    )
    if outcome == "worker_not_found":
        raise NotFound(f"worker {worker_id} not found")
    if outcome == "refused":
        ensure_worker_owner(actor, Worker(pk=worker_id, user_id=int(fact)))
    elif outcome == "task_refused":
        refuse_task_status(fact, Task.Status.IN_PROGRESS)
    elif outcome == "ok":
        audit_seal_after_commit()
        work_order.task = task
        return work_order
    elif outcome == "empty":
        if fact == "audited":  # the worker came back from offline
            audit_seal_after_commit()
        return None
    raise RuntimeError(f"hol_work_order_claim answered {outcome!r} ({fact!r})")


def complete_in_one_statement(*, actor: Any, work_order_id: UUID, output: str, now: datetime) -> tuple[WorkOrder, bool]:
    """The completed work order, and whether its task names a callback_url."""
    outcome, fact, (work_order,) = call_queue_function(
        "hol_work_order_complete",
        [work_order_id, *actor_params(actor), now, output],
        (WorkOrder,),
    )
    if outcome == "not_found":
        raise NotFound(f"work order {work_order_id} not found")
    if outcome == "refused":
        holder = None if work_order.worker_id is None else Worker(pk=work_order.worker_id, user_id=int(fact))
        work_order.worker = holder
        ensure_may_finish(actor, work_order, WorkOrder.Status.COMPLETED)
    elif outcome == "task_refused":
        refuse_task_status(fact, Task.Status.COMPLETED)
    elif outcome == "ok":
        audit_seal_after_commit()
        return work_order, fact == "callback"
    raise RuntimeError(f"hol_work_order_complete answered {outcome!r} ({fact!r})")


# --- plumbing -------------------------------------------------------------------------------------


def actor_params(actor: Any) -> list:
    """id (None for HOL itself), label, and type when known without a query (the function reads a
    user's type from its membership of AGENT_GROUP, as hol.actors does)."""
    system = is_system(actor)
    return [None if system else actor.pk, actor_label(actor), "system" if system else None]


@cache
def _statement(function: str, row_models: tuple[type[models.Model], ...]) -> str:
    arg_types, composites = SIGNATURES[function]
    columns = ["outcome", "fact"]
    for composite, model in zip(composites, row_models, strict=True):
        columns += [f"({composite}).{field.column}" for field in model._meta.concrete_fields]
    args = ", ".join(arg if arg.startswith("'") else f"%s::{arg}" for arg in arg_types)
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
