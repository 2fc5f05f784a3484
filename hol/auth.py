"""Signing in and staying signed in: the throttled token endpoint, the lockout answer, and the
revocation of an account's tokens when its password changes or it is deactivated."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.views import TokenObtainPairView

from hol import datadir
from hol.errors import error_body

LOCKED_OUT_MESSAGE = "Too many failed sign-ins for this account or from this address; try again later."


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer once a username or an address is locked out: 429, and when to retry."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("too_many_attempts", LOCKED_OUT_MESSAGE), status=429)
    else:
        response = HttpResponse(LOCKED_OUT_MESSAGE, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    return response


class ThrottledTokenObtainPairView(TokenObtainPairView):
    """simplejwt's token endpoint under django-axes. Axes flags the lockout on the request it was
    given, which here is DRF's wrapper rather than the Django request its middleware sees."""

    def finalize_response(self, request, response, *args, **kwargs):
        if getattr(request, "axes_locked_out", False):
            response = lockout_response(request._request)
        return super().finalize_response(request, response, *args, **kwargs)


# --- revocation -----------------------------------------------------------------------------------
User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="hol.auth.note_credential_change")
def _note_credential_change(sender, instance, raw: bool = False, update_fields=None, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before and (before["password"] != instance.password or (before["is_active"] and not instance.is_active)):
        instance._hol_revoke_tokens = True


@receiver(post_save, sender=User, dispatch_uid="hol.auth.revoke_on_credential_change")
def _revoke_on_credential_change(sender, instance, raw: bool = False, **kwargs) -> None:
    if getattr(instance, "_hol_revoke_tokens", False):
        del instance._hol_revoke_tokens
        revoke_refresh_tokens(instance)


def revoke_refresh_tokens(user) -> int:
    """Blacklist every refresh token issued to `user`, in the transaction of the change that
    asked for it. (Its access tokens carry the old password's digest and stop working at once.)"""
    with transaction.atomic():
        outstanding = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
        created = BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True
        )
    return len(created)


def demo_usernames() -> list[str]:
    """The demo accounts `./bin/hol run` made in this data dir that can still sign in."""
    names = datadir.demo_passwords(settings.HOL_DATA_DIR)
    return sorted(User.objects.filter(username__in=names, is_active=True).values_list("username", flat=True))


def admin_login(request: HttpRequest) -> HttpResponse:
    return admin.site.login(request, extra_context={"demo_usernames": demo_usernames()})
