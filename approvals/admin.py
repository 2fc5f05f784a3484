"""The approvers' admin. A request's own page shows what is asked, why it is risky, what
it concerns and how far the decision has come, with Approve / Reject / Escalate buttons for those
who may decide; the list keeps bulk actions. Every decision calls the same services as the API, so
every rule (role, object permission, self-approval, justification, reason, expiry, distinct
approvers) holds here too."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from approvals import services as approval_services
from approvals.admin_page import RequestPageDecisions
from approvals.forms import JustificationForm, ReasonForm
from approvals.models import ApprovalDecision, ApprovalRequest, ExecutedAction
from approvals.policy import current_policy
from approvals.selectors import approvals_decidable_by
from approvals.services.executions import shown
from approvals.wording import (
    pretty_json,
    progress_in_words,
    time_left_in_words,
)
from hol.actors import is_agent
from hol.admin import ReadOnlyAdmin, ReadOnlyInline
from hol.errors import DomainError

SUMMARY_MAX_CHARS = 40


def is_approver(user) -> bool:
    """People holding a role that may approve something; agents never."""
    if not user.is_active or not user.is_staff or is_agent(user):
        return False
    roles = current_policy().roles
    return any(roles[name].may_approve for name in user.groups.values_list("name", flat=True) if name in roles)


class DecisionInline(ReadOnlyInline):
    model = ApprovalDecision
    fields = ("approver", "role", "decision", "justification", "created_at")
    readonly_fields = fields
    verbose_name_plural = "decisions so far"

    def has_view_permission(self, request, obj=None) -> bool:
        return is_approver(request.user) or super().has_view_permission(request, obj)


class PendingFilter(admin.SimpleListFilter):
    title = "waiting on"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return [("me", "me (decidable by me)")]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(pk__in=approvals_decidable_by(actor=request.user).values("pk"))
        return queryset


# The request's page, top to bottom: where the decision stands, what is asked, what it concerns.
DECISION_FIELDS = (
    "status_display", "progress_display", "time_left_display", "assigned_display", "escalation_level",
    "require_justification",
)  # fmt: skip
ACTION_FIELDS = (
    "action_summary", "risk_display", "risk_factors_display", "action_details_display", "action_impact",
    "security_context_display", "action_hash",
)  # fmt: skip
CONCERNS_FIELDS = (
    "task_display", "work_order_display", "session_display", "agent_name", "requested_by", "workflow_id",
    "thread_id", "checkpoint_id", "audit_trail_display",
)  # fmt: skip
OUTCOME_FIELDS = (
    "approver", "approver_role", "approval_justification", "rejection_reason", "created_at", "decided_at",
    "expires_at", "consumed_at",
)  # fmt: skip


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(RequestPageDecisions, ReadOnlyAdmin):
    # Narrow columns only, and no navigation sidebar on this page: the list fits 1,400 px without
    # scrolling sideways (the id is on the request's page and searchable).
    list_display = (
        "action_summary", "risk_display", "status_display", "assigned_display", "approvals_display",
        "time_left_display", "requested_by",
    )  # fmt: skip
    list_filter = (PendingFilter, "status", "risk_level", "assigned_role", "environment")
    search_fields = ("id", "action_type", "operation", "environment", "agent_name", "workflow_id")
    ordering = ("expires_at",)
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected", "escalate_selected"]
    fieldsets = (
        ("Decision", {"fields": DECISION_FIELDS}),
        ("What the agent asks to do", {"fields": ACTION_FIELDS}),
        ("What it concerns", {"fields": CONCERNS_FIELDS}),
        ("Outcome", {"fields": OUTCOME_FIELDS}),
    )
    readonly_fields = [*DECISION_FIELDS, *ACTION_FIELDS, *CONCERNS_FIELDS, *OUTCOME_FIELDS]

    class Media:
        css = {"all": ["approvals/admin.css"]}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("requested_by", "assigned_to", "approver", "task", "work_order__worker", "agent_session")
            .prefetch_related("decisions__approver")
        )

    # Rows change only through services; approvers (role holders, staff) may look and decide.
    def has_view_permission(self, request, obj=None) -> bool:
        return is_approver(request.user) or super().has_view_permission(request, obj)

    def has_module_permission(self, request) -> bool:
        return is_approver(request.user) or super().has_module_permission(request)

    def has_decide_permission(self, request, obj=None) -> bool:
        """Who is offered decisions at all; the service still checks each request."""
        return is_approver(request.user)

    # --- columns and fields -----------------------------------------------------------------------

    @admin.display(description="action")
    def action_summary(self, obj: ApprovalRequest) -> str:
        # The agent chose these words: long ones are cut so they cannot push the list sideways.
        return Truncator(" ".join(part for part in (obj.action_type, obj.operation, obj.environment) if part)).chars(
            SUMMARY_MAX_CHARS
        )

    @admin.display(description="risk", ordering="risk_score")
    def risk_display(self, obj: ApprovalRequest) -> str:
        return format_html(
            '<span class="hol-badge hol-risk-{}">{}</span> {}', obj.risk_level, obj.risk_level, obj.risk_score
        )

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: ApprovalRequest) -> str:
        return format_html('<span class="hol-badge hol-status-{}">{}</span>', obj.status, obj.status)

    @admin.display(description="waiting on", ordering="assigned_role")
    def assigned_display(self, obj: ApprovalRequest) -> str:
        if obj.status != ApprovalRequest.Status.PENDING or not obj.assigned_role:
            return "—"
        who = obj.assigned_to.get_username() if obj.assigned_to_id else "anyone"
        return format_html('{} <span class="hol-muted">{}</span>', who, obj.assigned_role)

    @admin.display(description="time left", ordering="expires_at")
    def time_left_display(self, obj: ApprovalRequest) -> str:
        return time_left_in_words(obj)

    @admin.display(description="approvals")
    def approvals_display(self, obj: ApprovalRequest) -> str:
        return progress_in_words(obj)

    @admin.display(description="progress")
    def progress_display(self, obj: ApprovalRequest) -> str:
        approvals = [d for d in obj.decisions.all() if d.decision == ApprovalDecision.Decision.APPROVE]
        if not approvals:
            return progress_in_words(obj)
        return format_html(
            "{}: {}",
            progress_in_words(obj),
            format_html_join(", ", "approved by {} ({})", ((d.approver.get_username(), d.role) for d in approvals)),
        )

    @admin.display(description="risk factors")
    def risk_factors_display(self, obj: ApprovalRequest) -> str:
        factors = [f for f in obj.risk_factors or [] if isinstance(f, dict)]
        if not factors:
            return "—"
        items = format_html_join(
            "", "<li><strong>{}</strong>: {}</li>", ((f.get("name", ""), f.get("why", "")) for f in factors)
        )
        return format_html('<ul class="hol-factors">{}</ul>', items)

    @admin.display(description="action details")
    def action_details_display(self, obj: ApprovalRequest) -> str:
        return pretty_json(obj.action_details)

    @admin.display(description="security context")
    def security_context_display(self, obj: ApprovalRequest) -> str:
        return pretty_json(obj.security_context)

    @admin.display(description="task")
    def task_display(self, obj: ApprovalRequest) -> str:
        task = obj.task or (obj.work_order.task if obj.work_order_id else None)
        if task is None:
            return "—"
        where = f"{task.target_repo} @ {task.target_ref}" + (f" ({task.target_path})" if task.target_path else "")
        return format_html(
            '<a href="{}">{}</a> <span class="hol-muted">({})</span>'
            '<dl class="hol-task"><dt>objective</dt><dd>{}</dd><dt>repository</dt><dd>{}</dd></dl>',
            reverse("admin:tasks_task_change", args=[task.pk]),
            task.title,
            task.status,
            task.objective,
            where,
        )

    @admin.display(description="work order")
    def work_order_display(self, obj: ApprovalRequest) -> str:
        work_order = obj.work_order
        if work_order is None:
            return "—"
        held_by = f", held by {work_order.worker.name}" if work_order.worker_id else ""
        return format_html(
            '<a href="{}">{}</a> <span class="hol-muted">({}{})</span>',
            reverse("admin:tasks_workorder_change", args=[work_order.pk]),
            work_order.pk,
            work_order.status,
            held_by,
        )

    @admin.display(description="agent session")
    def session_display(self, obj: ApprovalRequest) -> str:
        if obj.agent_session is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a> <span class="hol-muted">({})</span>',
            reverse("admin:tasks_agentsession_change", args=[obj.agent_session.pk]),
            obj.agent_session.session_id,
            obj.agent_session.status,
        )

    @admin.display(description="audit trail")
    def audit_trail_display(self, obj: ApprovalRequest) -> str:
        url = reverse("admin:audit_auditentry_changelist")
        return format_html(
            '<a href="{}?target_type={}&amp;target_id={}">entries about this request</a>',
            url,
            obj._meta.model_name,
            obj.pk,
        )

    # --- the request's own page: the decision panel -----------------------------------------------

    def changelist_view(self, request, extra_context=None):
        if self.has_view_permission(request):
            # Overdue pending requests become expired (audited once) before the list shows them.
            approval_services.approvals_expire_overdue(among=self.get_queryset(request))
        context = {"title": "Approval requests", "is_nav_sidebar_enabled": False, **(extra_context or {})}
        return super().changelist_view(request, context)

    # --- bulk actions on the list -----------------------------------------------------------------

    def _decide_with_form(
        self, request, queryset, *, verb: str, call, form_class: type[forms.Form] = JustificationForm
    ) -> TemplateResponse | None:
        """First pass shows the justification page; the confirmed POST calls the service for each
        selected request and reports every refusal as the service worded it."""
        if request.POST.get("confirm") == "yes":
            form = form_class(request.POST)
            if form.is_valid():
                justification = form.cleaned_data["justification"]
                done = 0
                for obj in queryset:
                    try:
                        call(obj, justification)
                        done += 1
                    except DomainError as exc:
                        self.message_user(request, f"{str(obj.pk)[:8]}: {exc.message}", messages.ERROR)
                if done:
                    self.message_user(request, f"{verb}: {done} request(s)", messages.SUCCESS)
                return None
        else:
            form = form_class()
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} approval requests",
            "opts": self.model._meta,
            "queryset": queryset,
            "rows": [(obj, time_left_in_words(obj)) for obj in queryset],
            "form": form,
            "action": request.POST.get("action"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit_label": verb.capitalize(),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/approvals/approvalrequest/decide.html", context)

    @admin.action(description="Approve selected requests…", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._decide_with_form(
            request,
            queryset,
            verb="approve",
            call=lambda obj, why: approval_services.approval_decide(
                actor=request.user, request_id=obj.pk, decision="approve", justification=why
            ),
        )

    @admin.action(description="Reject selected requests…", permissions=["decide"])
    def reject_selected(self, request, queryset):
        return self._decide_with_form(
            request,
            queryset,
            verb="reject",
            form_class=ReasonForm,
            call=lambda obj, why: approval_services.approval_decide(
                actor=request.user, request_id=obj.pk, decision="reject", justification=why
            ),
        )

    @admin.action(description="Escalate selected requests…", permissions=["decide"])
    def escalate_selected(self, request, queryset):
        return self._decide_with_form(
            request,
            queryset,
            verb="escalate",
            call=lambda obj, why: approval_services.approval_escalate(
                actor=request.user, request_id=obj.pk, justification=why
            ),
        )


@admin.register(ExecutedAction)
class ExecutedActionAdmin(ReadOnlyAdmin):
    """What agents reported they ran; `flagged` rows ran without an approval that covered them."""

    list_display = ("reported_at", "reported_by", "tool_name", "what", "risk_level", "flagged", "approval", "task")
    list_filter = ("flagged", "risk_level", "outcome", "tool_name")
    search_fields = ("tool_use_id", "thread_id", "reported_by__username", "task__title")
    list_select_related = ("reported_by", "task")
    date_hierarchy = "reported_at"

    @admin.display(description="command or file")
    def what(self, obj: ExecutedAction) -> str:
        return Truncator(shown(obj)).chars(80)
