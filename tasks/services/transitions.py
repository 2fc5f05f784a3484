"""The status transition table of each model of the tasks app."""

from __future__ import annotations

from tasks.models import AgentSession, Execution, Task, Worker, WorkOrder

TASK_TRANSITIONS = {
    # Approved: queued (and enqueued). Rejected, expired, or withdrawn by its owner: cancelled.
    Task.Status.APPROVAL_PENDING: {Task.Status.QUEUED, Task.Status.CANCELLED},
    Task.Status.QUEUED: {Task.Status.IN_PROGRESS, Task.Status.CANCELLED},
    Task.Status.IN_PROGRESS: {Task.Status.QUEUED, Task.Status.COMPLETED, Task.Status.FAILED, Task.Status.CANCELLED},
    Task.Status.FAILED: {Task.Status.QUEUED},
}
WORK_ORDER_TRANSITIONS = {
    WorkOrder.Status.QUEUED: {WorkOrder.Status.CLAIMED, WorkOrder.Status.CANCELLED},
    WorkOrder.Status.CLAIMED: {
        WorkOrder.Status.RUNNING,
        WorkOrder.Status.COMPLETED,
        WorkOrder.Status.FAILED,
        WorkOrder.Status.QUEUED,
        WorkOrder.Status.CANCELLED,
    },
    WorkOrder.Status.RUNNING: {
        WorkOrder.Status.COMPLETED,
        WorkOrder.Status.FAILED,
        WorkOrder.Status.QUEUED,
        WorkOrder.Status.CANCELLED,
    },
}
# A live worker reports any working status; only deregistering or a lapsed heartbeat takes it
# offline, and any sign of life (heartbeat, claim) brings it back.
_LIVE_WORKER = {Worker.Status.IDLE, Worker.Status.BUSY, Worker.Status.WAITING, Worker.Status.ERROR}
WORKER_TRANSITIONS = {
    **{status: (_LIVE_WORKER - {status}) | {Worker.Status.OFFLINE} for status in _LIVE_WORKER},
    Worker.Status.OFFLINE: _LIVE_WORKER,
}
SESSION_TRANSITIONS = {
    AgentSession.Status.ACTIVE: {AgentSession.Status.IDLE, AgentSession.Status.TERMINATED},
    AgentSession.Status.IDLE: {AgentSession.Status.ACTIVE, AgentSession.Status.TERMINATED},
}
# An execution is one attempt: it opens running at the claim and closes once.
EXECUTION_TRANSITIONS = {Execution.Status.RUNNING: {Execution.Status.COMPLETED, Execution.Status.FAILED}}
