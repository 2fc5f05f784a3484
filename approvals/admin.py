"""The approvers' admin (SPEC §6): pending requests with risk, time left and assigned role; approve,
reject and escalate actions that ask for a justification on an intermediate page and call the same
services as the API, so every rule (role, object permission, self-approval, justification,
expiry, distinct approvers) holds here too."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from approvals import services as approval_services
from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.policy import current_policy
from hol.actors import is_agent
from hol.errors import DomainError


class JustificationForm(forms.Form):
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        required=False,
        help_text="Why. Required to approve high and critical requests.",
    )


def is_approver(user) -> bool:
    """People holding a role that may approve something; agents never."""
    if not user.is_active or not user.is_staff or is_agent(user):
        return False
    roles = current_policy().roles
    return any(roles[name].may_approve for name in user.groups.values_list("name", flat=True) if name in roles)


class DecisionInline(admin.TabularInline):
    model = ApprovalDecision
    fields = ("approver", "role", "decision", "justification", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return is_approver(request.user) or super().has_view_permission(request, obj)


class PendingFilter(admin.SimpleListFilter):
    title = "waiting on"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return [("me", "me (decidable by me)")]

    def queryset(self, request, queryset):
        if self.value() == "me":
            from approvals.selectors import approvals_decidable_by

            return queryset.filter(pk__in=approvals_decidable_by(actor=request.user).values("pk"))
        return queryset


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = (
        "short_id", "action_summary", "risk_level", "risk_score", "status", "assigned_role", "assigned_to",
        "time_left_display", "approvals_display", "requested_by", "created_at",
    )  # fmt: skip
    list_filter = (PendingFilter, "status", "risk_level", "assigned_role", "environment")
    search_fields = ("id", "action_type", "operation", "environment", "agent_name", "workflow_id")
    ordering = ("expires_at",)
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected", "escalate_selected"]
    readonly_fields = [field.name for field in ApprovalRequest._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("requested_by", "assigned_to").prefetch_related("decisions")

    # Rows change only through services; approvers (role holders, staff) may look and decide.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return is_approver(request.user) or super().has_view_permission(request, obj)

    def has_module_permission(self, request) -> bool:
        return is_approver(request.user) or super().has_module_permission(request)

    def has_decide_permission(self, request) -> bool:
        return is_approver(request.user)

    @admin.display(description="id")
    def short_id(self, obj: ApprovalRequest) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="action")
    def action_summary(self, obj: ApprovalRequest) -> str:
        return " ".join(part for part in (obj.action_type, obj.operation, obj.environment) if part)

    @admin.display(description="time left")
    def time_left_display(self, obj: ApprovalRequest) -> str:
        left = obj.time_left
        if left is None:
            return "—"
        minutes, seconds = divmod(int(left.total_seconds()), 60)
        return f"{minutes} min {seconds:02d} s" if left.total_seconds() > 0 else "overdue"

    @admin.display(description="approvals")
    def approvals_display(self, obj: ApprovalRequest) -> str:
        return f"{obj.approvals_count}/{obj.required_approvals}"

    def _decide_with_form(self, request, queryset, *, verb: str, call) -> TemplateResponse | None:
        """First pass shows the justification page; the confirmed POST calls the service for each
        selected request and reports every refusal as the service worded it."""
        if request.POST.get("confirm") == "yes":
            form = JustificationForm(request.POST)
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
            form = JustificationForm()
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} approval requests",
            "opts": self.model._meta,
            "queryset": queryset,
            "form": form,
            "action": request.POST.get("action"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit_label": verb.capitalize(),
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
