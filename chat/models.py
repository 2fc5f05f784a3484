from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from tasks.models import Task


class ChatMessage(models.Model):
    """One line of a task's chat and event stream. The integer id orders the stream, so a client
    that reconnects asks for everything `after` the last id it saw."""

    class SenderType(models.TextChoices):
        WORKER = "worker"
        HUMAN = "human"
        SYSTEM = "system"

    class MessageType(models.TextChoices):
        REQUEST = "request"  # a question awaiting a human answer
        RESPONSE = "response"  # the answer to a request
        STATUS = "status"  # an event: log, status, code_change, test_result, error, summary...

    class EventType(models.TextChoices):
        LOG = "log"
        STATUS = "status"
        CODE_CHANGE = "code_change"
        TEST_RESULT = "test_result"
        ERROR = "error"
        APPROVAL_REQUEST = "approval_request"
        SUMMARY = "summary"
        MESSAGE = "message"
        # HOL's own flag: a risky action ran without an approval that covered it.
        UNAPPROVED_ACTION = "unapproved_action"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    sender_type = models.CharField(max_length=10, choices=SenderType.choices)
    message_type = models.CharField(max_length=10, choices=MessageType.choices, default=MessageType.STATUS)
    event_type = models.CharField(max_length=20, choices=EventType.choices, default=EventType.MESSAGE)
    stage = models.CharField(max_length=40, blank=True, default="")
    content = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    session_id = models.CharField(max_length=200, blank=True, default="")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["task", "id"]),
            # Questions waiting for an answer (the dashboard) read agents' questions only, a small
            # share of the stream.
            models.Index(fields=["id"], condition=Q(message_type="request"), name="chat_question"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.pk} {self.event_type}"
