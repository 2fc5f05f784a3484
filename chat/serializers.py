from __future__ import annotations

from rest_framework import serializers

from chat.models import ChatMessage


class ChatMessageCreateSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    message_type = serializers.ChoiceField(choices=ChatMessage.MessageType.choices, default="status")
    event_type = serializers.ChoiceField(choices=ChatMessage.EventType.choices, default="log")
    content = serializers.CharField(allow_blank=True, default="", trim_whitespace=False)
    stage = serializers.CharField(max_length=40, allow_blank=True, default="")
    data = serializers.JSONField(required=False, default=dict)
    session_id = serializers.CharField(max_length=200, allow_blank=True, default="")
    parent_message_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    def validate_data(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("data must be a JSON object")
        return value


class ChatMessageSerializer(serializers.Serializer):
    """What every reader gets: the API, and each socket's `chat.message` event."""

    id = serializers.IntegerField()
    task_id = serializers.UUIDField()
    sender = serializers.CharField()
    sender_type = serializers.ChoiceField(choices=ChatMessage.SenderType.choices)
    message_type = serializers.ChoiceField(choices=ChatMessage.MessageType.choices)
    event_type = serializers.ChoiceField(choices=ChatMessage.EventType.choices)
    stage = serializers.CharField()
    content = serializers.CharField()
    data = serializers.JSONField()
    session_id = serializers.CharField()
    parent_message_id = serializers.IntegerField(allow_null=True)
    timestamp = serializers.DateTimeField()


class ChatReplySerializer(serializers.Serializer):
    question_id = serializers.IntegerField()
    answered = serializers.BooleanField()
    reply = ChatMessageSerializer(allow_null=True)


class WsTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()
