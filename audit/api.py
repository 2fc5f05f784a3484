"""The audit log over the API: entries and chain verification, for staff who are not agents."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit import selectors
from audit.serializers import AuditEntrySerializer, AuditQuerySerializer, VerificationSerializer


class AuditViewSet(viewsets.GenericViewSet):
    serializer_class = AuditEntrySerializer
    filter_backends: list = []  # filtering is the selector's job (AuditQuerySerializer)

    @extend_schema(
        parameters=[AuditQuerySerializer],
        responses=AuditEntrySerializer(many=True),
        description="Audit entries, newest first (staff only). `action` ending in `.` matches a prefix.",
    )
    def list(self, request: Request) -> Response:
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = selectors.audit_entries(user=request.user, **query.validated_data)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)

    @extend_schema(
        responses=VerificationSerializer,
        description="Verify the whole chain and the latest checkpoint (staff only); the same answer as "
        "`manage.py verify_audit`. 200 either way: `ok` says whether the chain is intact.",
    )
    @action(detail=False, methods=["get"])
    def verify(self, request: Request) -> Response:
        selectors.ensure_audit_reader(request.user)
        return Response(VerificationSerializer(selectors.audit_verify().as_dict()).data)
