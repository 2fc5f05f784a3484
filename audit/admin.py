from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from audit.actions import AuditAction
from audit.models import AuditCheckpoint, AuditEntry, AuditVerification
from audit.selectors import audit_verify, ensure_audit_reader
from hol.actors import is_agent
from hol.admin import ReadOnlyAdmin
from hol.errors import PermissionDenied


class ActionFilter(admin.SimpleListFilter):
    """Every action the log can hold, not only those recorded so far."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return AuditAction.choices()

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


class AuditLogAdmin(ReadOnlyAdmin):
    """Agents never read the audit log, whatever their flags or model permissions."""

    def has_view_permission(self, request, obj=None) -> bool:
        return not is_agent(request.user) and super().has_view_permission(request, obj)

    def has_module_permission(self, request) -> bool:
        return not is_agent(request.user) and super().has_module_permission(request)


@admin.register(AuditEntry)
class AuditEntryAdmin(AuditLogAdmin):
    list_display = ("seq", "timestamp", "action", "actor", "actor_type", "target_type", "target_id", "task_id")
    list_filter = ("component", "actor_type", ActionFilter)
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
class AuditCheckpointAdmin(AuditLogAdmin):
    list_display = ("seq", "created_at", "hash")
    readonly_fields = [f.name for f in AuditCheckpoint._meta.fields]


@admin.register(AuditVerification)
class AuditVerificationAdmin(AuditLogAdmin):
    list_display = ("started_at", "ok", "count", "head_seq", "first_bad_seq", "duration_seconds", "run_by")
    list_filter = ("ok",)
    readonly_fields = [f.name for f in AuditVerification._meta.fields]
