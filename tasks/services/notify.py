"""Telling a task's responsible human what happened to it."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser

from notifications.services import notification_create
from tasks.models import Task

User = AbstractBaseUser


def _tell_task_owner(*, task_id: UUID, kind: str, message: str, level: str = "info") -> None:
    task = Task.objects.filter(pk=task_id).select_related("assigned_to").first()
    if task is None or task.assigned_to is None:
        return
    notification_create(
        user=task.assigned_to,
        kind=kind,
        message=f"{task.title}: {message}",
        link=f"/tasks/{task.pk}/",
        level=level,
        related=task,
    )
