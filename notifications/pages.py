"""A person's notifications: the list, and marking them read."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hol.pages import person_required
from notifications import selectors
from notifications import services as notification_services


@person_required
def notification_list(request: HttpRequest) -> HttpResponse:
    notifications = selectors.notifications_for(user=request.user)[:100]
    return render(request, "notifications/list.html", {"notifications": notifications})


@require_POST
@person_required
def notification_read(request: HttpRequest, pk: Any) -> HttpResponse:
    notification = notification_services.notification_mark_read(actor=request.user, notification_id=int(pk))
    if request.POST.get("follow") and notification.link.startswith("/"):
        return redirect(notification.link)
    return redirect("page-notifications")
