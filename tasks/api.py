"""The agent API for tasks, workers, the queue and sessions. Thin: parse, call one
service or selector, render."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from approvals.throttles import count_approval_request
from hol.api import validated
from tasks import selectors
from tasks import services as task_services
from tasks.models import Task
from tasks.serializers import (
    ClaimSerializer,
    CompleteSerializer,
    EnqueueSerializer,
    FailSerializer,
    QueueStatusSerializer,
    SessionCreateSerializer,
    SessionSerializer,
    SessionTerminateSerializer,
    TaskCreateSerializer,
    TaskSerializer,
    TaskUpdateSerializer,
    WorkerHeartbeatSerializer,
    WorkerRegisterSerializer,
    WorkerSerializer,
    WorkOrderBriefSerializer,
    WorkOrderSerializer,
)


class TaskFilter(django_filters.FilterSet):
    repo = django_filters.CharFilter(field_name="target_repo", lookup_expr="iexact")

    class Meta:
        model = Task
        fields = ["status", "task_type", "operation", "priority", "repo"]


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TaskSerializer
    run_token_actions = ("list", "retrieve")
    filterset_class = TaskFilter

    def get_queryset(self):
        return selectors.tasks_visible_to(actor=self.request.user)

    @extend_schema(
        request=TaskCreateSerializer,
        responses={
            201: TaskSerializer,
            200: OpenApiResponse(TaskSerializer, "same idempotency_key: the existing task"),
        },
    )
    def create(self, request):
        data = validated(TaskCreateSerializer, request.data)
        if task_services.task_create_opens_approval(actor=request.user, payload=data):
            count_approval_request(request, view=self)
        task, created = task_services.task_create(actor=request.user, payload=data)
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=TaskUpdateSerializer, responses=TaskSerializer)
    def partial_update(self, request, pk=None):
        changes = validated(TaskUpdateSerializer, request.data)
        task = task_services.task_update(actor=request.user, task_id=pk, changes=changes)
        return Response(TaskSerializer(task).data)


class WorkerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = WorkerSerializer
    run_token_actions = ("heartbeat",)
    filterset_fields = ["status"]

    def get_queryset(self):
        return selectors.workers_visible_to(actor=self.request.user)

    @extend_schema(request=WorkerRegisterSerializer, responses={201: WorkerSerializer})
    def create(self, request):
        data = validated(WorkerRegisterSerializer, request.data)
        worker = task_services.worker_register(actor=request.user, name=data["name"])
        return Response(WorkerSerializer(worker).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses=WorkerSerializer, description="Deregister: the worker goes offline; held work is requeued."
    )
    def destroy(self, request, pk=None):
        worker = task_services.worker_deregister(actor=request.user, worker_id=pk)
        return Response(WorkerSerializer(worker).data)

    @extend_schema(request=WorkerHeartbeatSerializer, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        data = validated(WorkerHeartbeatSerializer, request.data)
        worker = task_services.worker_heartbeat(actor=request.user, worker_id=pk, status=data.get("status"))
        return Response(WorkerSerializer(worker).data)


class QueueViewSet(viewsets.ViewSet):
    """The work queue: enqueue, atomic claim, complete, fail, status."""

    run_token_actions = ("complete", "fail")

    @extend_schema(request=EnqueueSerializer, responses={201: WorkOrderBriefSerializer})
    @action(detail=False, methods=["post"])
    def enqueue(self, request):
        data = validated(EnqueueSerializer, request.data)
        work_order = task_services.work_order_enqueue(
            actor=request.user,
            task_id=data["task_id"],
            priority=data.get("priority"),
            max_retries=data.get("max_retries"),
        )
        return Response(WorkOrderBriefSerializer(work_order).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ClaimSerializer,
        responses={200: WorkOrderSerializer, 204: OpenApiResponse(description="nothing to claim")},
    )
    @action(detail=False, methods=["post"])
    def claim(self, request):
        data = validated(ClaimSerializer, request.data)
        work_order = task_services.work_order_claim(actor=request.user, worker_id=data["worker_id"])
        if work_order is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(WorkOrderSerializer(work_order).data)

    @extend_schema(request=CompleteSerializer, responses=WorkOrderBriefSerializer)
    @action(detail=False, methods=["post"])
    def complete(self, request):
        data = validated(CompleteSerializer, request.data)
        work_order = task_services.work_order_complete(
            actor=request.user, work_order_id=data["work_order_id"], output=data["output"]
        )
        return Response(WorkOrderBriefSerializer(work_order).data)

    @extend_schema(request=FailSerializer, responses=WorkOrderBriefSerializer)
    @action(detail=False, methods=["post"])
    def fail(self, request):
        data = validated(FailSerializer, request.data)
        work_order = task_services.work_order_fail(
            actor=request.user, work_order_id=data["work_order_id"], error=data["error"], retryable=data["retryable"]
        )
        return Response(WorkOrderBriefSerializer(work_order).data)

    @extend_schema(responses=QueueStatusSerializer)
    @action(detail=False, methods=["get"])
    def status(self, request):
        return Response(QueueStatusSerializer(selectors.queue_status()).data)


class SessionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = SessionSerializer
    run_token_actions = ("list", "create", "retrieve", "destroy", "heartbeat")
    filterset_fields = ["status", "worker", "task"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return selectors.sessions_visible_to(actor=self.request.user)

    @extend_schema(request=SessionCreateSerializer, responses={201: SessionSerializer})
    def create(self, request):
        data = validated(SessionCreateSerializer, request.data)
        session = task_services.session_create(
            actor=request.user, session_id=data["session_id"], worker_id=data["worker_id"], task_id=data.get("task_id")
        )
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(description="Read a session by HOL's id or by the agent's own session_id.")
    def retrieve(self, request, pk=None):
        return Response(SessionSerializer(selectors.session_lookup(actor=request.user, key=pk)).data)

    @extend_schema(request=SessionTerminateSerializer, responses=SessionSerializer)
    def destroy(self, request, pk=None):
        data = validated(SessionTerminateSerializer, request.data)
        session = selectors.session_lookup(actor=request.user, key=pk)
        session = task_services.session_terminate(
            actor=request.user, agent_session_pk=session.pk, reason=data["reason"]
        )
        return Response(SessionSerializer(session).data)

    @extend_schema(request=None, responses=SessionSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        session = selectors.session_lookup(actor=request.user, key=pk)
        session = task_services.session_heartbeat(actor=request.user, agent_session_pk=session.pk)
        return Response(SessionSerializer(session).data)
