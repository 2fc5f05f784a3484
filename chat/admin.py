from django.contrib import admin

from chat.models import ChatMessage


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    list_display = ("id", "task", "sender_type", "message_type", "event_type", "stage", "created_at")
    list_filter = ("sender_type", "message_type", "event_type", "stage")
    search_fields = ("content", "task__title", "session_id")
    raw_id_fields = ("task", "parent", "sender")
    readonly_fields = [f.name for f in ChatMessage._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
