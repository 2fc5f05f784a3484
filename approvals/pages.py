"""The approvals inbox: pending requests waiting on me or my role, decided through the same
service as the API and the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from approvals import services as approval_services
from approvals.selectors import approvals_decidable_by
from hol.errors import DomainError
from hol.pages import person_required


@person_required
def approval_inbox(request: HttpRequest) -> HttpResponse:
    # Overdue requests become expired (audited once) instead of showing as pending.
    approval_services.approvals_expire_overdue(among=approvals_decidable_by(actor=request.user))
    pending = (
        approvals_decidable_by(actor=request.user)
        .select_related("requested_by", "task", "assigned_to")
        .prefetch_related("decisions__approver")
        .order_by("expires_at")[:100]
    )
    return render(request, "approvals/inbox.html", {"pending": pending})


@require_POST
@person_required
def approval_decide(request: HttpRequest, pk: Any) -> HttpResponse:
    decision = request.POST.get("decision")
    target = request.POST.get("next") or "/approvals/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/approvals/"
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose approve or reject.")
        return redirect(target)
    try:
        approval = approval_services.approval_decide(
            actor=request.user,
            request_id=pk,
            decision=decision,
            justification=(request.POST.get("justification") or "").strip(),
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{approval.action_type}: {approval.status}.")
    return redirect(target)
