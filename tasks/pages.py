"""The task list (filters, pages, the create-and-enqueue form) and the task page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from approvals.models import ApprovalRequest
from approvals.selectors import approvals_decidable_by
from approvals.services import approvals_expire_overdue
from chat import selectors as chat_selectors
from chat.models import ChatMessage
from hol.actors import is_agent
from hol.errors import DomainError
from hol.pages import person_required
from tasks import selectors
from tasks import services as task_services
from tasks.intake import (
    INVALID_OPERATION,
    NETWORK_ACCESS_DENIED,
    REPO_NOT_ALLOWED,
    SECRETS_ACCESS_DENIED,
    TIME_BUDGET_TOO_HIGH,
    TIME_BUDGET_TOO_LOW,
)
from tasks.models import Priority, Task
from tasks.services.permissions import ensure_can_manage_task

STREAM_SHOWN = 100
UNAPPROVED_SHOWN = 10

# Which form field each of the intake gate's codes is about, so the error shows next to it.
FIELD_OF_CODE = {
    INVALID_OPERATION: "operation",
    REPO_NOT_ALLOWED: "repo",
    TIME_BUDGET_TOO_LOW: "time_budget_seconds",
    TIME_BUDGET_TOO_HIGH: "time_budget_seconds",
    NETWORK_ACCESS_DENIED: "allow_network",
    SECRETS_ACCESS_DENIED: "allow_secrets",
}


class OptionalJSONField(forms.JSONField):
    """A JSON field that shows nothing, not `null`, when left empty."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value in (None, "", {}) else super().prepare_value(value)


class TaskForm(forms.Form):
    title = forms.CharField(max_length=200, required=False)
    objective = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    task_type = forms.ChoiceField(choices=Task.Type.choices, initial=Task.Type.FEATURE)
    operation = forms.ChoiceField(choices=Task.Operation.choices, initial=Task.Operation.CODE_CHANGE)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.NORMAL)
    repo = forms.CharField(
        max_length=500, label="Repository", widget=forms.TextInput(attrs={"placeholder": "https://github.com/org/repo"})
    )
    ref = forms.CharField(max_length=200, initial="main", label="Branch or ref")
    path = forms.CharField(max_length=500, required=False)
    time_budget_seconds = forms.IntegerField(initial=900, label="Time budget (seconds)")
    allow_network = forms.BooleanField(required=False)
    allow_secrets = forms.BooleanField(required=False)
    assigned_to = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).exclude(groups__name="agent").order_by("username"),
        required=False,
        to_field_name="username",
        label="Responsible person",
    )
    inputs = OptionalJSONField(
        required=False,
        label="Inputs (JSON)",
        widget=forms.Textarea(
            attrs={
                "rows": 4,
                "placeholder": '{"edits": [{"path": "app.py", "find": "old", "replace": "new"}], '
                '"test_command": ["python", "-m", "unittest"]}',
            }
        ),
        help_text="What the agent works from. The bundled reference agent needs a plan: edits and a test command.",
    )
    enqueue = forms.BooleanField(required=False, initial=True, label="Put it on the queue now")

    def clean_inputs(self) -> dict[str, Any]:
        inputs = self.cleaned_data.get("inputs")
        if inputs in (None, ""):
            return {}
        if not isinstance(inputs, dict):
            raise forms.ValidationError("Inputs must be a JSON object.")
        return inputs

    def payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "title": data["title"],
            "objective": data["objective"],
            "description": data["description"],
            "task_type": data["task_type"],
            "operation": data["operation"],
            "priority": data["priority"],
            "target": {"repo": data["repo"], "ref": data["ref"], "path": data["path"]},
            "constraints": {
                "time_budget_seconds": data["time_budget_seconds"],
                "allow_network": data["allow_network"],
                "allow_secrets": data["allow_secrets"],
            },
            "assigned_to": data["assigned_to"].username if data["assigned_to"] else None,
            "inputs": data["inputs"],
            "enqueue": data["enqueue"],
        }


class TaskFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Task.Status.choices], required=False)
    task_type = forms.ChoiceField(choices=[("", "any type"), *Task.Type.choices], required=False)
    priority = forms.ChoiceField(choices=[("", "any priority"), *Priority.choices], required=False)
    repo = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "repository"}))


def _filtered(actor: Any, params: TaskFilterForm) -> Any:
    tasks = selectors.tasks_visible_to(actor=actor)
    if not params.is_valid():
        return tasks
    data = params.cleaned_data
    for name in ("status", "task_type", "priority"):
        if data[name]:
            tasks = tasks.filter(**{name: data[name]})
    if data["repo"]:
        tasks = tasks.filter(target_repo__icontains=data["repo"].strip().lower())
    return tasks


@person_required
def task_list(request: HttpRequest) -> HttpResponse:
    form = TaskForm()
    if request.method == "POST":
        form = TaskForm(request.POST)
        if form.is_valid():
            try:
                task, _ = task_services.task_create(actor=request.user, payload=form.payload())
            except DomainError as exc:
                field = FIELD_OF_CODE.get(exc.code)
                form.add_error(field, f"{exc.message} ({exc.code})")
            else:
                if task.status == Task.Status.APPROVAL_PENDING:
                    messages.success(request, "Task created; it is queued once its approval request is approved.")
                else:
                    messages.success(
                        request, "Task created" + (" and queued." if form.cleaned_data["enqueue"] else ".")
                    )
                return redirect("page-task", pk=task.pk)
    filters = TaskFilterForm(request.GET)
    size = settings.HOL_PAGE_SIZE
    try:
        page = max(int(request.GET.get("page", 1)), 1)
    except ValueError:
        page = 1
    # One row more than a page says whether there is a next page, without counting the table.
    rows = list(_filtered(request.user, filters).order_by("-created_at")[(page - 1) * size : page * size + 1])
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "tasks/task_list.html",
        {
            "tasks": rows[:size],
            "filters": filters,
            "form": form,
            "page": page,
            "has_next": len(rows) > size,
            "query": query.urlencode(),
            "show_form": request.method == "POST",
        },
        status=422 if request.method == "POST" else 200,
    )


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None


@person_required
def task_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    task = chat_selectors.task_for_stream(actor=request.user, task_id=pk)
    # The newest STREAM_SHOWN messages, live; `?before=<id>` pages back through older ones (a
    # window that does not go live: the live stream continues from the newest).
    before = _positive_int(request.GET.get("before"))
    window = ChatMessage.objects.filter(task=task).select_related("sender").order_by("-id")
    if before is not None:
        window = window.filter(id__lt=before)
    newest = list(window[: STREAM_SHOWN + 1])[::-1]
    earlier = len(newest) > STREAM_SHOWN
    newest = newest[1:] if earlier else newest
    # An answer comes after its question, so the answers to the questions shown are among the
    # task's messages from the oldest one shown on: one range of the (task, id) index.
    answered = set(
        ChatMessage.objects.filter(
            task=task, id__gte=newest[0].pk if newest else 0, message_type=ChatMessage.MessageType.RESPONSE
        ).values_list("parent_id", flat=True)
    )
    # The task's overdue requests become expired (audited once) instead of showing as pending.
    approvals_expire_overdue(among=ApprovalRequest.objects.filter(task=task))
    decidable = set(approvals_decidable_by(actor=request.user).filter(task=task).values_list("pk", flat=True))
    try:
        ensure_can_manage_task(request.user, task)
        may_cancel = task.status in (Task.Status.APPROVAL_PENDING, Task.Status.QUEUED, Task.Status.IN_PROGRESS)
    except DomainError:
        may_cancel = False
    return render(
        request,
        "tasks/task_detail.html",
        {
            "task": task,
            "messages_shown": newest,
            "answered": answered,
            "last_id": newest[-1].pk if newest else 0,
            "earlier_before": newest[0].pk if earlier else None,
            "paged_back": before is not None,
            "work_orders": task.work_orders.select_related("worker").order_by("-enqueued_at")[:20],
            "executions": task.executions.select_related("worker", "agent_session").order_by("-started_at")[:20],
            "approvals": ApprovalRequest.objects.filter(task=task)
            .prefetch_related("decisions")
            .order_by("-created_at")[:20],
            "decidable": decidable,
            "may_cancel": may_cancel,
            "may_answer": not is_agent(request.user),
            # Risky actions that ran without approval head the page, however far back they are.
            "unapproved": list(
                ChatMessage.objects.filter(task=task, event_type=ChatMessage.EventType.UNAPPROVED_ACTION).order_by(
                    "-id"
                )[:UNAPPROVED_SHOWN]
            ),
        },
    )


@require_POST
@person_required
def task_cancel(request: HttpRequest, pk: Any) -> HttpResponse:
    try:
        task_services.task_update(actor=request.user, task_id=pk, changes={"status": Task.Status.CANCELLED})
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Task cancelled.")
    return redirect("page-task", pk=pk)
