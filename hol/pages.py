"""Pages every person sees: sign-in, the dashboard, and what each page's header needs (the
unread badge). Agents' accounts do not open pages: they work through the API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from approvals.selectors import approvals_decidable_by
from approvals.services import approvals_expire_overdue
from chat.models import ChatMessage
from hol import errors
from hol.actors import is_agent
from hol.dashboard import dashboard_snapshot
from notifications.selectors import unread_count
from tasks.selectors import sees_every_task


def nav_context(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": unread_count(user=user)}


def person_required(view: Callable) -> Callable:
    """Signed in (else to /login/), and a person: an agent's account gets 403. Services' NotFound
    and PermissionDenied become the 404 and 403 pages."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if is_agent(request.user):
            raise PermissionDenied("pages are for people; agents use the API")
        try:
            return view(request, *args, **kwargs)
        except errors.NotFound as exc:
            raise Http404(exc.message) from None
        except errors.PermissionDenied as exc:
            raise PermissionDenied(exc.message) from None

    return wrapped


class PersonLoginForm(AuthenticationForm):
    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if is_agent(user):
            raise forms.ValidationError("Agent accounts sign in through the API, not here.", code="agent")


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = PersonLoginForm
    redirect_authenticated_user = True


@person_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # Every task's activity is on it: people who may not read every task get a page of their own.
    if not sees_every_task(request.user):
        return render(request, "no_role.html")
    recent = ChatMessage.objects.select_related("task", "sender").order_by("-id")[:15]
    # Overdue requests become expired (audited once) instead of showing as waiting.
    approvals_expire_overdue(among=approvals_decidable_by(actor=request.user))
    waiting_on_me = approvals_decidable_by(actor=request.user).order_by("expires_at")[:5]
    return render(
        request,
        "dashboard.html",
        {"snapshot": dashboard_snapshot(actor=request.user), "recent": recent, "waiting_on_me": waiting_on_me},
    )
