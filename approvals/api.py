"""The approvals API: request, list, decide, cancel, consume, assess. The long-poll read
`GET /api/v1/approvals/{id}?wait=N` is in approvals/wait_api.py."""

from __future__ import annotations

import json
from typing import Any

import django_filters
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
from approvals.throttles import ApprovalRequestThrottle, ExecutedReportThrottle
from hol.api import validated
from hol.errors import BadRequest


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
