"""Every action the audit log records, by name. `audit_record` refuses any other string, so a
misspelled action fails loudly, and the admin's filter lists exactly these."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_CANCELLED = "task.cancelled"
    TASK_APPROVED = "task.approved"
    TASK_CALLBACK_SENT = "task.callback_sent"
    TASK_CALLBACK_FAILED = "task.callback_failed"

    WORK_ORDER_ENQUEUED = "work_order.enqueued"
    WORK_ORDER_CLAIMED = "work_order.claimed"
    WORK_ORDER_STARTED = "work_order.started"
    WORK_ORDER_COMPLETED = "work_order.completed"
    WORK_ORDER_REQUEUED = "work_order.requeued"
    WORK_ORDER_FAILED = "work_order.failed"
    WORK_ORDER_CANCELLED = "work_order.cancelled"

    EXECUTION_STARTED = "execution.started"

    WORKER_REGISTERED = "worker.registered"
    WORKER_STATUS_CHANGED = "worker.status_changed"
    WORKER_DEREGISTERED = "worker.deregistered"
    WORKER_OFFLINE = "worker.offline"

    SESSION_CREATED = "session.created"
    SESSION_TERMINATED = "session.terminated"

    SERVICE_ACCOUNT_CREATED = "service_account.created"

    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_AUTO_APPROVED = "approval.auto_approved"
    APPROVAL_ASSIGNED = "approval.assigned"
    APPROVAL_APPROVAL_RECORDED = "approval.approval_recorded"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_ESCALATED = "approval.escalated"
    APPROVAL_CANCELLED = "approval.cancelled"
    APPROVAL_EXPIRED = "approval.expired"
    APPROVAL_EXPIRY_WARNED = "approval.expiry_warned"
    APPROVAL_CONSUMED = "approval.consumed"
    APPROVAL_EXECUTED = "approval.executed"
    APPROVAL_BYPASSED = "approval.bypassed"

    CHAT_MESSAGE_POSTED = "chat.message_posted"

    NOTIFICATION_CREATED = "notification.created"
    NOTIFICATION_READ = "notification.read"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(member.value, member.value) for member in cls]
