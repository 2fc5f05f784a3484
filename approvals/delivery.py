"""Delivering approval notifications beyond the in-app list: email (Django's email backend) and a
Slack-compatible webhook, per the channels of the request's risk level. Called in on_commit only."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail

log = logging.getLogger(__name__)


def send_email(*, recipients: Iterable[str], subject: str, message: str) -> None:
    recipients = sorted({address for address in recipients if address})
    if not recipients:
        return
    try:
        send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # a mail server problem must not undo or fail a committed decision
        log.warning("approval email to %s failed", recipients, exc_info=True)


def post_webhook(*, text: str, payload: dict) -> None:
    """POST `{"text": ..., "approval": {...}}` (what a Slack incoming webhook reads) to the
    configured URL; failures are logged."""
    url = settings.HOL_APPROVAL_WEBHOOK_URL
    if not url:
        return
    if not url.startswith(("http://", "https://")):
        log.warning("HOL_APPROVAL_WEBHOOK_URL must be http(s); not posting")
        return
    body = json.dumps({"text": text, "approval": payload}).encode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.HOL_APPROVAL_WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
    except Exception:  # the receiver being down must not fail a committed decision
        log.warning("approval webhook POST to %s failed", url, exc_info=True)
