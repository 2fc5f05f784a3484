"""A person's own notifications: list (`?unread=1` for unread only) and mark read."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from notifications import selectors
from notifications import services as notification_services
from notifications.serializers import NotificationSerializer


class NotificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = NotificationSerializer
    filterset_fields = ["is_read", "kind", "level"]

    def get_queryset(self):
        return selectors.notifications_for(user=self.request.user)

    @extend_schema(parameters=[OpenApiParameter("is_read", bool)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        try:
            notification_id = int(pk)
        except (TypeError, ValueError):
            notification_id = 0
        notification = notification_services.notification_mark_read(actor=request.user, notification_id=notification_id)
        return Response(NotificationSerializer(notification).data)
