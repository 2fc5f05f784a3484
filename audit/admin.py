from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log is read-only for everyone, superusers included."""

    list_display = ("timestamp", "action", "actor", "actor_type", "target_type", "target_id", "task_id")
    list_filter = ("component", "actor_type", "action")
    search_fields = ("action", "actor", "target_id", "task_id")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
