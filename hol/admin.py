"""Admin plumbing every app shares: a read-only base (rows change only through services) and
the loop that runs a service on each selected row, reporting domain errors per row."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages

from hol.errors import DomainError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Operators look; services change. Actions on the admin call services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def run_on_each(
    modeladmin: admin.ModelAdmin, request, objects: Iterable[Any], call: Callable[[Any], Any], done: str
) -> int:
    """Call a service for each object; a DomainError becomes an error message for that row."""
    ok = 0
    for obj in objects:
        try:
            call(obj)
            ok += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
    if ok:
        modeladmin.message_user(request, f"{ok} {done}", messages.SUCCESS)
    return ok
