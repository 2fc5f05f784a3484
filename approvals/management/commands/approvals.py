"""Operators' approval workflow: `manage.py approvals list-pending|approve|reject|status|clean-expired`.

Decisions go through the same services as the API and the admin; `--as USER` names the approver.
Reads are made as HOL itself (someone with a shell on the server already sees everything), or as
`--as USER` to see what that person may."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from approvals import selectors
from approvals import services as approval_services
from approvals.serializers import ApprovalRequestSerializer
from hol.actors import SYSTEM
from hol.errors import DomainError


class Command(BaseCommand):
    help = "List, decide and inspect approval requests; expire overdue ones."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        listing = sub.add_parser("list-pending", help="pending requests, soonest to expire first")
        listing.add_argument("--as", dest="as_user", help="only those USER may decide")
        approve = sub.add_parser("approve", help="approve a request as USER")
        approve.add_argument("request_id")
        approve.add_argument("--as", dest="as_user", required=True, help="the approver's username")
        approve.add_argument("--justification", "-j", default="", help="why (required for high/critical)")
        reject = sub.add_parser("reject", help="reject a request as USER, saying why")
        reject.add_argument("request_id")
        reject.add_argument("--as", dest="as_user", required=True, help="the approver's username")
        reject.add_argument("--reason", "--justification", "-r", "-j", dest="justification", default="", help="why")
        status = sub.add_parser("status", help="one request as JSON, or a whole workflow or task")
        which = status.add_mutually_exclusive_group(required=True)
        which.add_argument("request_id", nargs="?")
        which.add_argument("--workflow", dest="workflow_id", help="every request of this workflow_id")
        which.add_argument("--task", dest="task_id", help="every request linked to this task")
        status.add_argument("--as", dest="as_user", help="see only what USER may")
        sub.add_parser("clean-expired", help="mark overdue pending requests expired (what Beat does)")

    def handle(self, *args, subcommand: str, **options) -> None:
        try:
            getattr(self, "_" + subcommand.replace("-", "_"))(**options)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

    def _actor(self, username: str | None):
        if username is None:
            return SYSTEM
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def _list_pending(self, *, as_user: str | None = None, **options) -> None:
        actor = self._actor(as_user)
        # Overdue requests become expired (audited once) instead of being listed as pending.
        approval_services.approvals_expire_overdue(among=selectors.approvals_decidable_by(actor=actor))
        now = timezone.now()
        rows = (
            selectors.approvals_decidable_by(actor=actor)
            .select_related("requested_by", "assigned_to")
            .order_by("expires_at")
        )
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

    def _decide(self, decision: str, *, request_id: str, as_user: str, justification: str, **options) -> None:
        if as_user is None:
            raise CommandError("--as USER is required to decide")
        request = approval_services.approval_decide(
            actor=self._actor(as_user), request_id=request_id, decision=decision, justification=justification
        )
        self.stdout.write(f"{request.pk}: {request.status} ({request.approvals_count}/{request.required_approvals})")

    def _approve(self, **options) -> None:
        self._decide("approve", **options)

    def _reject(self, **options) -> None:
        self._decide("reject", **options)

    def _status(
        self, *, request_id: str | None, workflow_id: str | None, task_id: str | None, as_user: str | None, **options
    ) -> None:
        actor = self._actor(as_user)
        if request_id is not None:
            approval_services.approval_expire_if_overdue(request_id=request_id)
            request = selectors.approval_get(actor=actor, request_id=request_id)
            self.stdout.write(json.dumps(ApprovalRequestSerializer(request).data, indent=2, default=str))
            return
        report = selectors.approvals_report(actor=actor, workflow_id=workflow_id, task_id=task_id)
        overdue = [request.pk for request in report["requests"] if request.is_overdue(timezone.now())]
        for pk in overdue:
            approval_services.approval_expire_if_overdue(request_id=pk)
        if overdue:
            report = selectors.approvals_report(actor=actor, workflow_id=workflow_id, task_id=task_id)
        scope = f"workflow {workflow_id}" if workflow_id is not None else f"task {task_id}"
        self.stdout.write(f"{scope}: {len(report['requests'])} approval request(s)")
        self.stdout.write("by status: " + ", ".join(f"{status}={n}" for status, n in report["counts"].items()))
        self.stdout.write("timeline:")
        for entry in report["timeline"]:
            self.stdout.write(
                f"  {entry['timestamp'].isoformat(timespec='seconds')}  {entry['target_id'][:8]}"
                f"  {entry['action']:<28} by {entry['actor']}"
            )
        if report["rejections"]:
            self.stdout.write("rejections:")
            for request, reason in report["rejections"]:
                self.stdout.write(
                    f"  {str(request.pk)[:8]}  {request.action_type}/{request.operation or '-'}: {reason}"
                )

    def _clean_expired(self, **options) -> None:
        self.stdout.write(f"expired: {approval_services.approvals_expire_overdue()}")
