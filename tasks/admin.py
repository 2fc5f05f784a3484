"""Operators' view of tasks, work orders, workers, sessions and executions. Rows change only
through services: admin actions call them, and are offered to the operators the services let act
on anyone's rows (a view-only staff account is not offered them; the services check each row)."""

from __future__ import annotations

from django.contrib import admin

from hol.admin import ReadOnlyAdmin, ReadOnlyInline, run_on_each
from tasks import services as task_services
from tasks.models import AgentSession, Execution, Task, Worker, WorkOrder
from tasks.services.permissions import is_operator


class OperatedAdmin(ReadOnlyAdmin):
    """Read-only pages with actions for operators. `has_change_permission` stays False (no edit
    form); actions ask for `operate`: the services' own rule for acting on other accounts' rows,
    a person in a task-manager role or an account with the model's `change` permission."""

    def has_operate_permission(self, request) -> bool:
        opts = self.opts
        return is_operator(request.user, f"{opts.app_label}.change_{opts.model_name}")


class WorkOrderInline(ReadOnlyInline):
    model = WorkOrder
    fields = ("status", "worker", "priority", "retry_count", "enqueued_at", "claimed_at", "completed_at")
    readonly_fields = fields


@admin.register(Task)
class TaskAdmin(OperatedAdmin):
    list_display = ("title", "status", "priority", "operation", "task_type", "target_repo", "assigned_to", "created_at")
    list_filter = ("status", "priority", "operation", "task_type", "created_at")
    search_fields = ("title", "objective", "target_repo", "idempotency_key", "id")
    date_hierarchy = "created_at"
    inlines = [WorkOrderInline]
    actions = ["cancel_tasks", "enqueue_tasks"]

    @admin.action(description="Cancel selected tasks", permissions=["operate"])
    def cancel_tasks(self, request, queryset) -> None:
        run_on_each(
            self,
            request,
            queryset,
            lambda task: task_services.task_update(
                actor=request.user, task_id=task.pk, changes={"status": Task.Status.CANCELLED}
            ),
            "tasks cancelled",
        )

    @admin.action(description="Enqueue selected tasks", permissions=["operate"])
    def enqueue_tasks(self, request, queryset) -> None:
        run_on_each(
            self,
            request,
            queryset,
            lambda task: task_services.work_order_enqueue(actor=request.user, task_id=task.pk),
            "tasks enqueued",
        )


@admin.register(WorkOrder)
class WorkOrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "status", "priority", "worker", "retry_count", "enqueued_at", "lease_expires_at")
    list_filter = ("status", "priority", "enqueued_at")
    search_fields = ("id", "task__title", "worker__name", "last_error")
    list_select_related = ("task", "worker")


@admin.register(Worker)
class WorkerAdmin(OperatedAdmin):
    list_display = ("name", "user", "status", "last_heartbeat_at", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "user__username", "id")
    actions = ["deregister_workers"]

    @admin.action(description="Deregister selected workers (requeue their work)", permissions=["operate"])
    def deregister_workers(self, request, queryset) -> None:
        run_on_each(
            self,
            request,
            queryset,
            lambda worker: task_services.worker_deregister(actor=request.user, worker_id=worker.pk),
            "workers deregistered",
        )


@admin.register(AgentSession)
class AgentSessionAdmin(OperatedAdmin):
    list_display = ("session_id", "worker", "task", "status", "last_activity_at", "created_at", "terminated_at")
    list_filter = ("status",)
    search_fields = ("session_id", "worker__name", "task__title")
    actions = ["terminate_sessions"]

    @admin.action(description="Terminate selected sessions", permissions=["operate"])
    def terminate_sessions(self, request, queryset) -> None:
        run_on_each(
            self,
            request,
            queryset,
            lambda session: task_services.session_terminate(
                actor=request.user,
                agent_session_pk=session.pk,
                reason=f"terminated by {request.user.get_username()}",
            ),
            "sessions terminated",
        )


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ("work_order", "attempt", "status", "worker", "exit_code", "started_at", "completed_at")
    list_filter = ("status",)
    search_fields = ("task__title", "output", "work_order__id")
