from django.contrib import admin

from hol.admin import ReadOnlyAdmin
from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "kind", "level", "is_read", "message")
    list_filter = ("level", "is_read", "kind")
    search_fields = ("message", "user__username", "kind")
    readonly_fields = [f.name for f in Notification._meta.fields]
