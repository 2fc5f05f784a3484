"""The approvals API (SPEC §4): request, list, decide, cancel, consume, assess; and the long-poll
read `GET /api/v1/approvals/{id}?wait=N`, an async view that holds neither a thread nor a database
connection while it waits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import django_filters
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from approvals import selectors
from approvals import services as approval_services
from approvals.broadcast import channel_name
from approvals.models import ApprovalRequest
from approvals.policy import current_policy
from approvals.serializers import (
    ActionSerializer,
    ApprovalCreateSerializer,
    ApprovalRequestSerializer,
    AssessmentSerializer,
    CancelInputSerializer,
    DecisionInputSerializer,
)
from hol.api import validated
from hol.errors import BadRequest, DomainError


class ApprovalFilter(django_filters.FilterSet):
    assigned_to = django_filters.CharFilter(field_name="assigned_to__username")
    requested_by = django_filters.CharFilter(field_name="requested_by__username")
    task = django_filters.UUIDFilter(field_name="task_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = ApprovalRequest
        fields = [
            "status", "risk_level", "assigned_role", "assigned_to", "requested_by", "environment", "action_type",
            "workflow_id", "thread_id", "task", "created_after",
        ]  # fmt: skip


class ApprovalViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Approval requests an agent makes before a risky action, and the decisions on them."""

    serializer_class = ApprovalRequestSerializer
    filterset_class = ApprovalFilter

    def get_queryset(self):
        return selectors.approvals_visible_to(actor=self.request.user).prefetch_related("decisions__approver")

    def _render(self, request: ApprovalRequest, code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.approvals_visible_to(actor=self.request.user).prefetch_related("decisions__approver")
        return Response(ApprovalRequestSerializer(fresh.get(pk=request.pk)).data, status=code)

    @extend_schema(request=ApprovalCreateSerializer, responses={201: ApprovalRequestSerializer})
    def create(self, request):
        data = validated(ApprovalCreateSerializer, request.data)
        action_fields = {key: data.pop(key) for key in ("action_type", "resource_type", "operation", "environment")}
        action_fields["details"] = data.pop("details")
        approval = approval_services.approval_request_create(actor=request.user, action=action_fields, **data)
        return self._render(approval, status.HTTP_201_CREATED)

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


class RiskAssessView(APIView):
    """Assess an action without creating a request. Query parameters: action_type, resource_type,
    operation, environment, details (a JSON object); any other parameter becomes a detail."""

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


class _Unauthenticated(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _error(code: str, message: str, status_code: int) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status_code)


def _release_connection() -> None:
    # Waiting agents must not pin database connections between reads; inside an outer
    # transaction (the test suite's), the connection is not ours to close.
    if not connection.in_atomic_block:
        connection.close()


def _authenticate(request: HttpRequest) -> Any:
    """The API's JWT, or the session of a signed-in person."""
    try:
        result = JWTAuthentication().authenticate(request)
    except drf_exceptions.AuthenticationFailed as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        raise _Unauthenticated(str(detail.get("code", "authentication_failed")), str(detail.get("detail"))) from None
    if result is not None:
        return result[0]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    raise _Unauthenticated("not_authenticated", "Authentication credentials were not provided.")


def _serialize(actor: Any, pk: str) -> dict:
    return ApprovalRequestSerializer(selectors.approval_get(actor=actor, request_id=pk)).data


def _read(actor: Any, pk: str) -> dict:
    try:
        return _serialize(actor, pk)
    finally:
        _release_connection()


def _authenticate_and_read(request: HttpRequest, pk: str) -> tuple[Any, dict]:
    try:
        actor = _authenticate(request)
        return actor, _serialize(actor, pk)
    finally:
        _release_connection()


def _wait_seconds(raw: str | None) -> float:
    if raw in (None, ""):
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest("wait must be a number of seconds", code="invalid") from None
    if not 0 <= wait < float("inf"):
        raise BadRequest("wait must be a number of seconds ≥ 0", code="invalid")
    return min(wait, float(settings.HOL_APPROVAL_WAIT_MAX_SECONDS))


async def approval_detail(request: HttpRequest, pk: str) -> JsonResponse:
    """Read a request; with `wait=N`, wait while it is pending until it is decided or N seconds
    (capped by HOL_APPROVAL_WAIT_MAX_SECONDS) pass. The wait is a Redis pub/sub subscription on
    the event loop: the row is read once at the start and once per wake-up, each read on a
    connection that is closed right after."""
    if request.method != "GET":
        return _error("method_not_allowed", f'Method "{request.method}" not allowed.', 405)
    try:
        wait = _wait_seconds(request.GET.get("wait"))
    except DomainError as exc:
        return _error(exc.code, exc.message, exc.status_code)
    client = pubsub = None
    try:
        if wait > 0:
            # Subscribe before the first read, so a decision made in between still wakes us.
            client = aioredis.from_url(settings.REDIS_URL)
            pubsub = client.pubsub()
            await pubsub.subscribe(channel_name(pk))
        actor, body = await sync_to_async(_authenticate_and_read)(request, pk)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while pubsub is not None and body["status"] == ApprovalRequest.Status.PENDING:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message is not None:
                body = await sync_to_async(_read)(actor, pk)
    except _Unauthenticated as exc:
        return _error(exc.code, exc.message, 401)
    except DomainError as exc:
        return _error(exc.code, exc.message, exc.status_code)
    finally:
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()
    return JsonResponse(body, encoder=DjangoJSONEncoder)
