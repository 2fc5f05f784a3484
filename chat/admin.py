from django.contrib import admin

from chat.models import ChatMessage
from hol.admin import ReadOnlyAdmin


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "sender_type", "message_type", "event_type", "stage", "created_at")
    list_filter = ("sender_type", "message_type", "event_type", "stage")
    search_fields = ("content", "task__title", "session_id")
    raw_id_fields = ("task", "parent", "sender")
    readonly_fields = [f.name for f in ChatMessage._meta.fields]
