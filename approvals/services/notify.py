"""Telling people and waiting agents about approval requests.

In-app notifications are created inside the transaction that changes the request. Email and the
Slack-compatible webhook (per the channels of the request's risk level) go to a Celery task
dispatched on commit, so a rollback sends nothing and a slow mail server or webhook never holds a
request or a database transaction. Agents long-polling a request are woken by a Redis pub/sub
message, also on commit."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils.crypto import constant_time_compare, salted_hmac

from approvals.models import ApprovalRequest
from approvals.policy import Policy
from approvals.services.permissions import requesting_accounts
from hol.actors import AGENT_GROUP
from hol.pubsub import redis_client
from notifications.services import notification_create

log = logging.getLogger(__name__)
User = AbstractBaseUser


def link(request: ApprovalRequest) -> str:
    return f"/admin/approvals/approvalrequest/{request.pk}/change/"


def describe(request: ApprovalRequest) -> str:
    target = " ".join(part for part in (request.action_type, request.operation, request.environment) if part)
    return f"{request.risk_level} risk approval request {str(request.pk)[:8]} ({target})"


def role_members(role: str) -> list[User]:
    return list(get_user_model().objects.filter(groups__name=role, is_active=True).exclude(groups__name=AGENT_GROUP))


def approvers_of(request: ApprovalRequest) -> list[User]:
    """Who hears about a request waiting for a decision: its assignee, or its whole role."""
    if request.assigned_to_id:
        return [request.assigned_to]
    excluded = requesting_accounts(request)
    return [user for user in role_members(request.assigned_role) if user.pk not in excluded]


def notify(
    request: ApprovalRequest, users: list[User], *, kind: str, message: str, level: str = "info", policy: Policy
) -> None:
    """In-app for each user now; email and webhook (per the level's channels) after commit."""
    from approvals.tasks import deliver_approval_notice

    for user in users:
        notification_create(user=user, kind=kind, message=message, link=link(request), level=level, related=request)
    channels = [channel for channel in policy.level(request.risk_level).channels if channel in ("email", "webhook")]
    if "email" in channels and not users:
        channels.remove("email")
    if not channels:
        return
    arguments = {
        "kind": kind,
        "message": message,
        "recipient_ids": [user.pk for user in users],
        "channels": channels,
        "payload": {
            "id": str(request.pk),
            "kind": kind,
            "status": request.status,
            "risk_level": request.risk_level,
            "action_type": request.action_type,
            "operation": request.operation,
            "environment": request.environment,
            "link": link(request),
        },
    }
    # robust: a broker that is down is logged, and never turns a committed decision into an error.
    transaction.on_commit(lambda: deliver_approval_notice.delay(**arguments), robust=True)


def deliver(*, kind: str, message: str, recipient_ids: list[Any], channels: list[str], payload: dict) -> None:
    """What the Celery task runs: email the recipients, post to the webhook."""
    if "email" in channels:
        addresses = (
            get_user_model().objects.filter(pk__in=recipient_ids, is_active=True).values_list("email", flat=True)
        )
        send_email(recipients=addresses, subject=f"[HOL] {kind}", message=message)
    if "webhook" in channels:
        post_webhook(text=slack_escape(message), payload=payload)


def slack_escape(text: str) -> str:
    """Slack reads `<!channel>`, `<url|label>` and `&` entities as markup; agent-supplied text
    (action types, operations, environments) is made inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send_email(*, recipients: Any, subject: str, message: str) -> None:
    recipients = sorted({address for address in recipients if address})
    if not recipients:
        return
    try:
        send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # a mail server problem must not undo or fail a committed decision
        log.warning("approval email to %d recipient(s) failed: %s", len(recipients), type(exc).__name__)


def _where(url: str) -> str:
    """The webhook URL as it may be logged: scheme and host only (its path is often the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def post_webhook(*, text: str, payload: dict) -> None:
    """POST `{"text": ..., "approval": {...}}` (what a Slack incoming webhook reads) to the
    configured URL; failures are logged without the URL's path or the exception text, which can
    carry it."""
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
    except Exception as exc:  # the receiver being down must not fail a committed decision
        log.warning("approval webhook POST to %s failed: %s", _where(url), type(exc).__name__)


# --- waking agents that wait on a request ---------------------------------------------------------


def channel_name(request_id: object) -> str:
    # Pub/sub channels are server-wide (not per Redis db); a request id is unique across HOL installs.
    return f"hol:approval:{request_id}"


# A waiter trusts a decision it is handed only with this seal: Redis carries it, but the database
# stays the one source of truth, so a message forged by whoever reaches Redis is merely ignored.
_SEAL_SALT = "hol.approvals.decided"


def seal(request_id: object, body: str) -> str:
    return salted_hmac(_SEAL_SALT, f"{request_id}\n{body}", algorithm="sha256").hexdigest()


def unsealed_body(request_id: object, message: bytes | None) -> str | None:
    """The decided request's API body a wake-up message carries, if it carries one sealed by
    this HOL for this request; None otherwise (the waiter then reads the row itself)."""
    if not message:
        return None
    try:
        data = json.loads(message)
        body, mac = data["body"], data["seal"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(body, str) or not isinstance(mac, str):
        return None
    return body if constant_time_compare(mac, seal(request_id, body)) else None


def _decided_body(request_id: object) -> dict[str, Any] | None:
    """The request as the API renders it, read after the commit; None while still pending."""
    from approvals.serializers import ApprovalRequestSerializer

    try:  # get(), not first(): no ORDER BY to compile on every decision
        request = (
            ApprovalRequest.objects.select_related("requested_by", "assigned_to", "approver")
            .prefetch_related("decisions__approver")
            .get(pk=request_id)
        )
    except ApprovalRequest.DoesNotExist:
        return None
    if request.status == ApprovalRequest.Status.PENDING:
        return None
    return ApprovalRequestSerializer(request).data


def publish_decided(request_id: object, status: str) -> dict[str, Any] | None:
    """Wake agents long-polling this request. When any wait (Redis counts the subscribers) and
    the request is decided, the message carries its sealed API body, so a thousand waiters answer
    without a thousand reads; that body is returned too. A lost message only costs them a wait:
    they re-read the row when their wait ends, so a Redis failure is logged, never raised."""
    client = redis_client()
    channel = channel_name(request_id)
    body = None
    try:
        message: dict[str, Any] = {"status": status}
        if status != ApprovalRequest.Status.PENDING and dict(client.pubsub_numsub(channel)).get(channel.encode()):
            body = _decided_body(request_id)
            if body is not None:
                encoded = json.dumps(body, cls=DjangoJSONEncoder)
                message.update(body=encoded, seal=seal(request_id, encoded))
        client.publish(channel, json.dumps(message))
    except redis.RedisError:
        log.warning("could not publish the decision of approval %s", request_id, exc_info=True)
    return body


def publish_on_commit(request: ApprovalRequest) -> None:
    """Publish the decision once committed. A body rendered for the waiters is kept on the
    instance (`published_body`), so the API answering the decider renders it once, not twice."""

    def publish() -> None:
        request.published_body = publish_decided(request.pk, request.status)

    transaction.on_commit(publish)
