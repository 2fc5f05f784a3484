from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from audit.models import AuditCheckpoint, AuditEntry
from audit.selectors import audit_verify, ensure_audit_reader
from hol.errors import PermissionDenied


class ReadOnlyAdmin(admin.ModelAdmin):
    """The audit log is read-only for everyone, superusers included."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "timestamp", "action", "actor", "actor_type", "target_type", "target_id", "task_id")
    list_filter = ("component", "actor_type", "action")
    search_fields = ("action", "actor", "target_id", "task_id")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    ordering = ("-timestamp", "-id")
    change_list_template = "audit/change_list.html"

    def get_urls(self):
        verify = path("verify/", self.admin_site.admin_view(self.verify_view), name="audit_auditentry_verify")
        return [verify, *super().get_urls()]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """The verification result, for staff (the same check as `manage.py verify_audit`)."""
        try:
            ensure_audit_reader(request.user)
        except PermissionDenied:
            return HttpResponse(status=403)
        context = {**self.admin_site.each_context(request), "title": "Audit chain verification"}
        context["result"] = audit_verify()
        context["opts"] = self.model._meta
        return TemplateResponse(request, "audit/verify.html", context)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "hash")
    readonly_fields = [f.name for f in AuditCheckpoint._meta.fields]
