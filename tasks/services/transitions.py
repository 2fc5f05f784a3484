"""The status transition table of each model of the tasks app."""

from __future__ import annotations

from tasks.models import AgentSession, Task, WorkOrder

TASK_TRANSITIONS = {
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
SESSION_TRANSITIONS = {
    AgentSession.Status.ACTIVE: {AgentSession.Status.IDLE, AgentSession.Status.TERMINATED},
    AgentSession.Status.IDLE: {AgentSession.Status.ACTIVE, AgentSession.Status.TERMINATED},
}
