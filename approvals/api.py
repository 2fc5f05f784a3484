"""The approvals API: request, list, decide, cancel, consume, assess; and the long-poll
read `GET /api/v1/approvals/{id}?wait=N`, an async view that holds neither a thread, a database
connection nor a Redis connection of its own while it waits."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import django_filters
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors
from approvals import services as approval_services
from approvals.models import ApprovalRequest
from approvals.policy import current_policy
from approvals.risk import action_hash
from approvals.serializers import (
    ActionSerializer,
    ApprovalCreateSerializer,
    ApprovalRequestSerializer,
    AssessmentSerializer,
    CancelInputSerializer,
    DecisionInputSerializer,
    ExecutedActionSerializer,
    ExecutedReportSerializer,
)
from approvals.services import channel_name
from approvals.throttles import ApprovalRequestThrottle, ExecutedReportThrottle
from hol.api import validated
from hol.errors import BadRequest, DomainError
from hol.longpoll import (
    POLL_SECONDS_WITHOUT_REDIS,
    answer_when_done,
    authenticate,
    error_response,
    extend_lease,
    limited,
    method_not_allowed,
    release_connection,
    release_request_thread,
    wait_seconds,
)
from hol.pubsub import Watch, shared_subscriber

log = logging.getLogger(__name__)


class ApprovalFilter(django_filters.FilterSet):
    assigned_to = django_filters.CharFilter(field_name="assigned_to__username")
    requested_by = django_filters.CharFilter(field_name="requested_by__username")
    task = django_filters.UUIDFilter(field_name="task_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = ApprovalRequest
        fields = [
            "status", "risk_level", "assigned_role", "assigned_to", "requested_by", "environment", "action_type",
            "workflow_id", "thread_id", "checkpoint_id", "task", "created_after",
        ]  # fmt: skip


class ApprovalViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Approval requests an agent makes before a risky action, and the decisions on them."""

    serializer_class = ApprovalRequestSerializer
    filterset_class = ApprovalFilter
    run_token_actions = ("list", "create", "cancel", "consume", "executed")

    def get_queryset(self):
        return selectors.approvals_visible_to(actor=self.request.user).prefetch_related("decisions__approver")

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action == "create":
            return [*throttles, ApprovalRequestThrottle()]
        if self.action == "executed":
            return [*throttles, ExecutedReportThrottle()]
        return throttles

    def list(self, request, *args, **kwargs):
        # Overdue pending requests read as expired (and become so) before they are shown.
        approval_services.approvals_expire_overdue(among=self.filter_queryset(self.get_queryset()))
        return super().list(request, *args, **kwargs)

    def _render(self, request: ApprovalRequest, code: int = status.HTTP_200_OK) -> Response:
        # A decision agents waited on was rendered for them once committed (the service checked
        # the caller may act on, and so see, it): answer with that same body.
        body = getattr(request, "published_body", None)
        if body is None:
            fresh = selectors.approvals_visible_to(actor=self.request.user).prefetch_related("decisions__approver")
            body = ApprovalRequestSerializer(fresh.get(pk=request.pk)).data
        return Response(body, status=code)

    @extend_schema(
        request=ApprovalCreateSerializer, responses={201: ApprovalRequestSerializer, 200: ApprovalRequestSerializer}
    )
    def create(self, request):
        data = validated(ApprovalCreateSerializer, request.data)
        action_fields = {key: data.pop(key) for key in ("action_type", "resource_type", "operation", "environment")}
        action_fields["details"] = data.pop("details")
        approval, created = approval_services.approval_request_ask(actor=request.user, action=action_fields, **data)
        # Asking again for the same action returns the open request: 200, not a second one.
        return self._render(approval, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def _decide(self, request, pk, decision: str) -> Response:
        data = validated(DecisionInputSerializer, request.data)
        approval = approval_services.approval_decide(
            actor=request.user, request_id=pk, decision=decision, justification=data["justification"]
        )
        return self._render(approval)

    @extend_schema(request=DecisionInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, pk, "approve")

    @extend_schema(request=DecisionInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, pk, "reject")

    @extend_schema(request=DecisionInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def escalate(self, request, pk=None):
        data = validated(DecisionInputSerializer, request.data)
        approval = approval_services.approval_escalate(
            actor=request.user, request_id=pk, justification=data["justification"]
        )
        return self._render(approval)

    @extend_schema(request=CancelInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        data = validated(CancelInputSerializer, request.data)
        approval = approval_services.approval_cancel(actor=request.user, request_id=pk, reason=data["reason"])
        return self._render(approval)

    @extend_schema(request=ActionSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def consume(self, request, pk=None):
        data = validated(ActionSerializer, request.data)
        approval = approval_services.approval_consume(actor=request.user, request_id=pk, action=data)
        return self._render(approval)

    @extend_schema(
        request=ExecutedReportSerializer, responses={201: ExecutedActionSerializer, 200: ExecutedActionSerializer}
    )
    @action(detail=False, methods=["post"])
    def executed(self, request):
        """An agent reports an action it ran (Claude Code's PostToolUse hook). A risky action no
        consumed approval covered is flagged; 201 for a newly kept report, 200 for an action that
        needs no approval or a tool use reported before."""
        data = validated(ExecutedReportSerializer, request.data)
        action_fields = {key: data.pop(key) for key in ("action_type", "resource_type", "operation", "environment")}
        action_fields["details"] = data.pop("details")
        executed, created, assessment = approval_services.approval_execution_report(
            actor=request.user, action=action_fields, **data
        )
        body = {
            "id": executed.pk if executed else None,
            "tool_use_id": data["tool_use_id"],
            "risky": executed is not None,
            "flagged": bool(executed and executed.flagged),
            "risk_level": executed.risk_level if executed else assessment.risk_level,
            "action_hash": executed.action_hash if executed else action_hash(action_fields),
            "approval": executed.approval_id if executed else None,
            "task": executed.task_id if executed else None,
            "reported_at": executed.reported_at if executed else None,
        }
        return Response(
            ExecutedActionSerializer(body).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class RiskAssessView(APIView):
    """Assess an action without creating a request. Query parameters: action_type, resource_type,
    operation, environment, details (a JSON object); any other parameter becomes a detail."""

    run_token_actions = ("get",)

    @extend_schema(
        parameters=[
            OpenApiParameter("action_type", str, required=True),
            OpenApiParameter("resource_type", str),
            OpenApiParameter("operation", str),
            OpenApiParameter("environment", str),
            OpenApiParameter("details", str, description="a JSON object"),
        ],
        responses=AssessmentSerializer,
    )
    def get(self, request):
        params = request.query_params
        details: dict[str, Any] = {}
        if params.get("details"):
            try:
                details = json.loads(params["details"])
            except ValueError:
                raise BadRequest("details must be a JSON object", code="invalid") from None
            if not isinstance(details, dict):
                raise BadRequest("details must be a JSON object", code="invalid")
        known = {"action_type", "resource_type", "operation", "environment", "details"}
        for key in params:
            if key not in known:
                details.setdefault(key, params[key])
        data = validated(
            ActionSerializer, {**{k: params[k] for k in known - {"details"} if k in params}, "details": details}
        )
        assessment = approval_services.risk_assess(action=data)
        level = current_policy().level(assessment.risk_level)
        return Response(
            AssessmentSerializer(
                {
                    **assessment.as_dict(),
                    "auto_approve": level.auto_approve,
                    "required_approvals": level.require_approval_count,
                    "require_justification": level.require_justification,
                    "require_role": level.require_role,
                    "timeout_minutes": level.timeout_minutes,
                }
            ).data
        )


# --- the long-poll read ---------------------------------------------------------------------------


@dataclass
class _Seen:
    """What one read of the request tells the waiting loop."""

    body: dict
    expires_at: datetime | None  # while pending: when it will read as expired
    lease_worker_id: Any  # the caller's worker holding the linked work order, whose lease the wait extends


def _serialize(actor: Any, pk: str) -> _Seen:
    from tasks.models import WorkOrder

    approval = selectors.approval_get(actor=actor, request_id=pk)
    if approval.is_overdue(timezone.now()) and approval_services.approval_expire_if_overdue(request_id=approval.pk):
        approval = selectors.approval_get(actor=actor, request_id=pk)
    pending = approval.status == ApprovalRequest.Status.PENDING
    worker_id = None
    if pending and approval.work_order_id:
        worker_id = (
            WorkOrder.objects.filter(pk=approval.work_order_id, status__in=WorkOrder.HELD, worker__user_id=actor.pk)
            .values_list("worker_id", flat=True)
            .first()
        )
    # A plain dict: the serializer's ReturnDict would keep the serializer and its fields alive
    # for as long as the wait lasts.
    body = dict(ApprovalRequestSerializer(approval).data)
    return _Seen(body, approval.expires_at if pending else None, worker_id)


def _read(actor: Any, pk: str) -> _Seen:
    try:
        return _serialize(actor, pk)
    finally:
        release_connection()


def _authenticate_and_read(request: HttpRequest, pk: str) -> tuple[Any, _Seen]:
    try:
        actor = authenticate(request)
        return actor, _serialize(actor, pk)
    finally:
        release_connection()


async def approval_detail(request: HttpRequest, pk: str) -> HttpResponse:
    """Read a request; with `wait=N`, wait while it is pending until it is decided or N seconds
    (capped by HOL_APPROVAL_WAIT_MAX_SECONDS) pass. Waiters share the process's one Redis
    subscription: the row is read once at the start, each read on a connection that is closed
    right after; the decision's wake-up message carries the decided request, sealed, so the
    waiter answers without reading again. Without Redis (down or hung) the wait re-reads the row
    every few seconds instead, so the decision still arrives. A request that reaches its deadline
    during the wait is read again, and so answers `expired`. When the request names a work order
    the caller's worker holds, the wait heartbeats that worker every
    HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS (default 10), so the lease outlives the wait.

    Once the first read finds it pending, the answer is a 200 whose body is made when the wait
    ends (hol.longpoll.answer_when_done); a request that leaves the caller's view meanwhile ends
    the wait on what was last seen."""
    if request.method != "GET":
        return method_not_allowed(request)
    try:
        wait = wait_seconds(request.GET.get("wait"))
        if wait <= 0:
            _, seen = await limited(_authenticate_and_read, request, pk)
            return JsonResponse(seen.body, encoder=DjangoJSONEncoder)
        subscriber = shared_subscriber()
        await subscriber.ready(timeout=min(wait, 1.0))
        # Subscribe before the first read, so a decision made in between still wakes us.
        watch = await subscriber.watch(channel_name(pk))
        try:
            actor, seen = await limited(_authenticate_and_read, request, pk)
        except BaseException:
            watch.end()
            raise
    except DomainError as exc:
        return error_response(exc)
    if seen.body["status"] != ApprovalRequest.Status.PENDING:
        watch.end()
        return JsonResponse(seen.body, encoder=DjangoJSONEncoder)
    return await answer_when_done(request, _decision(watch, actor, pk, seen, wait), watch)


async def _decision(watch: Watch, actor: Any, pk: str, seen: _Seen, wait: float) -> AsyncIterator[bytes]:
    """The body `approval_detail` answers once the request is decided or the wait ends."""
    try:
        heartbeat_every = float(getattr(settings, "HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS", 10))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        next_heartbeat = loop.time()
        decided = watch.wakeup
        try:
            while seen.body["status"] == ApprovalRequest.Status.PENDING:
                now = loop.time()
                if now >= deadline:
                    break
                if seen.lease_worker_id is not None and now >= next_heartbeat:
                    if not await limited(extend_lease, actor, seen.lease_worker_id):
                        seen.lease_worker_id = None
                    next_heartbeat = now + heartbeat_every
                # Without Redis nothing will wake us: poll the database instead.
                polling = not watch.subscriber.healthy
                wake_at = deadline
                if polling:
                    wake_at = min(wake_at, now + POLL_SECONDS_WITHOUT_REDIS)
                if seen.expires_at is not None:
                    wake_at = min(wake_at, now + max(0.0, (seen.expires_at - timezone.now()).total_seconds()) + 0.01)
                if seen.lease_worker_id is not None:
                    wake_at = min(wake_at, next_heartbeat)
                release_request_thread()  # no idle thread of its own while it waits
                try:
                    await asyncio.wait_for(decided.wait(), timeout=max(0.0, wake_at - now))
                    woken = True
                except TimeoutError:
                    woken = False
                message = decided.message if woken else None
                decided.clear()
                # The decision usually comes sealed in the message: answered without a read.
                if (body := approval_services.unsealed_body(seen.body["id"], message)) is not None:
                    yield body.encode()
                    return
                overdue = seen.expires_at is not None and seen.expires_at <= timezone.now()
                if woken or polling or overdue:
                    try:
                        seen = await limited(_read, actor, pk)
                    except DomainError:
                        break  # gone from the caller's view meanwhile: the wait ends on what it last saw
        except Exception:
            # The answer is a 200 already (its head passed the middleware): logged, and the agent
            # gets what was last seen and asks again.
            log.warning("approval %s: the wait ended on an error; answering the last read", pk, exc_info=True)
        yield json.dumps(seen.body, cls=DjangoJSONEncoder).encode()
    finally:
        watch.end()
