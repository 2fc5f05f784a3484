"""The approval request's own admin page: a decision panel that says where the decision stands
and, to those who may decide, offers Approve / Reject / Escalate, posting to a view that calls the
same services as the API (a forged post meets the same refusals)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from approvals import services as approval_services
from approvals.forms import DecisionForm
from approvals.models import ApprovalRequest
from approvals.policy import current_policy
from approvals.selectors import approvals_decidable_by
from approvals.wording import deadline_in_words, outcome_in_words, outcome_message, progress_in_words
from hol.errors import DomainError


class RequestPageDecisions:
    """Mixed into the ApprovalRequest admin: the decide URL, the panel's context, the decide view."""

    def get_urls(self):
        decide = path(
            "<path:object_id>/decide/",
            self.admin_site.admin_view(self.decide_view),
            name="approvals_approvalrequest_decide",
        )
        return [decide, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if (
            obj is not None
            and obj.is_overdue(timezone.now())
            and self.has_view_permission(request, obj)
            and approval_services.approval_expire_if_overdue(request_id=obj.pk)
        ):
            # Past its deadline it reads as expired, here as in the API, never as pending.
            obj = self.get_object(request, unquote(object_id))
        context = {**(extra_context or {}), **(self._decision_panel(request, obj) if obj else {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _decision_panel(self, request: HttpRequest, obj: ApprovalRequest) -> dict:
        policy = current_policy()
        pending = obj.status == ApprovalRequest.Status.PENDING
        decided_by_me = next((d for d in obj.decisions.all() if d.approver_id == request.user.pk), None)
        may_decide = (
            pending
            and decided_by_me is None
            and self.has_decide_permission(request, obj)
            and approvals_decidable_by(actor=request.user).filter(pk=obj.pk).exists()
        )
        level = policy.level(obj.risk_level)
        role = policy.roles.get(obj.assigned_role)
        if not pending:
            why_not = outcome_in_words(obj)
        elif decided_by_me is not None:
            why_not = f"You {decided_by_me.decision}d this request; another approver must decide."
        elif obj.requested_by_id == request.user.pk:
            why_not = "You made this request; someone else must decide it."
        elif not may_decide:
            deciders = " or ".join(policy.roles_for_level(obj.risk_level)) or "nobody"
            why_not = f"You may not decide this request: {obj.risk_level} requests are decided by a {deciders}."
        else:
            why_not = ""
        needs = ["a reason to reject"]
        if level.require_justification:
            needs.insert(0, f"a justification to approve ({obj.risk_level} risk)")
        return {
            "hol_request": obj,
            "hol_may_decide": may_decide,
            "hol_why_not": why_not,
            "hol_progress": progress_in_words(obj),
            "hol_time_left": deadline_in_words(obj),
            "hol_escalates_to": role.escalates_to if role else None,
            "hol_text_help": "Needed: " + " and ".join(needs) + ".",
            "hol_require_justification": level.require_justification,
            "hol_decide_url": reverse("admin:approvals_approvalrequest_decide", args=[obj.pk]),
        }

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The buttons' target. Refusals are the service's own words, shown on the request's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("approval request not found")
        if not self.has_decide_permission(request, obj):
            raise DjangoPermissionDenied
        back = HttpResponseRedirect(reverse("admin:approvals_approvalrequest_change", args=[obj.pk]))
        form = DecisionForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    self.message_user(request, error, messages.ERROR)
            return back
        decision, text = form.cleaned_data["decision"], form.cleaned_data["text"]
        try:
            if decision == "escalate":
                done = approval_services.approval_escalate(actor=request.user, request_id=obj.pk, justification=text)
            else:
                done = approval_services.approval_decide(
                    actor=request.user, request_id=obj.pk, decision=decision, justification=text
                )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return back
        self.message_user(request, outcome_message(decision, done), messages.SUCCESS)
        return back
