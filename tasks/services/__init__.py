"""Every state change of tasks, work orders, workers, sessions and executions, one module per
sub-domain. Each function locks what it changes, checks permission and the transition, changes,
and records the audit entry in the same transaction. Views, admin actions and Celery tasks call
these; nothing else writes these models."""

from tasks.services.callbacks import callback_dispatch_on_commit, task_callback_send
from tasks.services.intake_approval import task_intake_approval_settled
from tasks.services.queue import (
    backoff_seconds,
    work_order_claim,
    work_order_complete,
    work_order_enqueue,
    work_order_fail,
    work_order_start,
    work_orders_requeue_lapsed,
)
from tasks.services.sessions import (
    session_create,
    session_heartbeat,
    session_tell_owner,
    session_terminate,
    sessions_terminate_stale,
)
from tasks.services.tasks import task_create, task_create_opens_approval, task_update
from tasks.services.workers import worker_deregister, worker_heartbeat, worker_register, workers_mark_silent_offline

__all__ = [
    "backoff_seconds",
    "callback_dispatch_on_commit",
    "session_create",
    "session_heartbeat",
    "session_tell_owner",
    "session_terminate",
    "sessions_terminate_stale",
    "task_callback_send",
    "task_create",
    "task_create_opens_approval",
    "task_intake_approval_settled",
    "task_update",
    "work_order_claim",
    "work_order_complete",
    "work_order_enqueue",
    "work_order_fail",
    "work_order_start",
    "work_orders_requeue_lapsed",
    "worker_deregister",
    "worker_heartbeat",
    "worker_register",
    "workers_mark_silent_offline",
]
