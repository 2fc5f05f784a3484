"""Operators' approval workflow: `manage.py approvals list-pending|approve|reject|status|clean-expired`.
Decisions go through the same services as the API and the admin; `--as USER` names the approver."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from approvals import selectors
from approvals import services as approval_services
from approvals.models import ApprovalRequest
from approvals.serializers import ApprovalRequestSerializer
from hol.errors import DomainError


class Command(BaseCommand):
    help = "List, decide and inspect approval requests; expire overdue ones."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        listing = sub.add_parser("list-pending", help="pending requests, soonest to expire first")
        listing.add_argument("--as", dest="as_user", help="only those USER may decide")
        for verb in ("approve", "reject"):
            decide = sub.add_parser(verb, help=f"{verb} a request as USER")
            decide.add_argument("request_id")
            decide.add_argument("--as", dest="as_user", required=True, help="the approver's username")
            decide.add_argument("--justification", "-j", default="", help="why (required for high/critical approvals)")
        status = sub.add_parser("status", help="one request as JSON")
        status.add_argument("request_id")
        sub.add_parser("clean-expired", help="mark overdue pending requests expired (what Beat does)")

    def handle(self, *args, subcommand: str, **options) -> None:
        try:
            getattr(self, "_" + subcommand.replace("-", "_"))(**options)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

    def _user(self, username: str | None):
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def _list_pending(self, *, as_user: str | None = None, **options) -> None:
        actor = self._user(as_user)
        qs = (
            selectors.approvals_decidable_by(actor=actor)
            if actor is not None
            else ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
        )
        now = timezone.now()
        rows = qs.select_related("requested_by", "assigned_to").order_by("expires_at")
        for request in rows:
            left = max(0, int((request.expires_at - now).total_seconds()))
            self.stdout.write(
                f"{request.pk}  {request.risk_level:<8} {request.action_type}/{request.operation or '-'}"
                f"/{request.environment or '-'}  role={request.assigned_role}"
                f" to={request.assigned_to.get_username() if request.assigned_to else '-'}"
                f" by={request.requested_by.get_username()} left={left // 60}m{left % 60:02d}s"
            )
        if not rows:
            self.stdout.write("no pending requests")

    def _decide(self, decision: str, *, request_id: str, as_user: str, justification: str) -> None:
        request = approval_services.approval_decide(
            actor=self._user(as_user), request_id=request_id, decision=decision, justification=justification
        )
        self.stdout.write(f"{request.pk}: {request.status} ({request.approvals_count}/{request.required_approvals})")

    def _approve(self, **options) -> None:
        self._decide(
            "approve",
            request_id=options["request_id"],
            as_user=options["as_user"],
            justification=options["justification"],
        )

    def _reject(self, **options) -> None:
        self._decide(
            "reject",
            request_id=options["request_id"],
            as_user=options["as_user"],
            justification=options["justification"],
        )

    def _status(self, *, request_id: str, **options) -> None:
        request = selectors.approval_get(actor=None, request_id=request_id)  # operators see every request
        self.stdout.write(json.dumps(ApprovalRequestSerializer(request).data, indent=2, default=str))

    def _clean_expired(self, **options) -> None:
        self.stdout.write(f"expired: {approval_services.approvals_expire_overdue()}")
