"""Closing the execution of a held work order: the attempt ends with its work order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hol.errors import Conflict
from hol.transitions import ensure_transition
from tasks.models import Execution, WorkOrder
from tasks.services.transitions import EXECUTION_TRANSITIONS


def execution_close(*, work_order: WorkOrder, status: str, now: datetime, **fields: Any) -> None:
    """The running execution of `work_order` becomes `status`. A held work order has exactly one;
    finding none (or two) is refused rather than passed over."""
    ensure_transition(Execution.Status.RUNNING, status, EXECUTION_TRANSITIONS, what="execution")
    running = Execution.objects.filter(work_order=work_order, status=Execution.Status.RUNNING)
    closed = running.update(status=status, completed_at=now, **fields)
    if closed != 1:
        raise Conflict(
            f"work order {work_order.pk} had {closed} running executions instead of one", code="invalid_transition"
        )
