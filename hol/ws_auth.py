"""Who is on the other end of a WebSocket.

People: the session cookie (channels' AuthMiddlewareStack, applied outside this middleware).
Agents: a JWT offered as the subprotocol `hol.jwt.<token>` next to `hol.v1` (the server accepts
`hol.v1`, so the token never appears in a URL or a log), or a one-time ticket `?ticket=` obtained
with that JWT from `POST /api/v1/ws/ticket`, valid 30 seconds and redeemable once.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from hol.errors import NotFound, PermissionDenied
from hol.pubsub import redis_client
from hol.run_scope import RunScope, RunScopedJWTAuthentication, run_scope, scope_user

log = logging.getLogger(__name__)

SUBPROTOCOL = "hol.v1"
JWT_PREFIX = "hol.jwt."
TICKET_SECONDS = 30


def _ticket_key(ticket: str) -> str:
    return f"hol:ws-ticket:{ticket}"


def ticket_issue(*, user: Any) -> str:
    """A random single-use ticket standing for `user` (and the run its token is limited to) for
    TICKET_SECONDS."""
    ticket = secrets.token_urlsafe(32)
    scope = run_scope(user)
    value = f"{user.pk} {scope.encode()}" if scope is not None else str(user.pk)
    redis_client().set(_ticket_key(ticket), value, ex=TICKET_SECONDS)
    return ticket


async def _ticket_redeem(ticket: str) -> str | None:
    client = aioredis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        async with client.pipeline(transaction=True) as pipe:
            user_id, _ = await pipe.get(_ticket_key(ticket)).delete(_ticket_key(ticket)).execute()
    except redis.RedisError:
        log.warning("could not redeem a WebSocket ticket", exc_info=True)
        return None
    finally:
        await client.aclose()
    return user_id.decode() if user_id else None


@database_sync_to_async
def _ticket_user(value: str) -> Any:
    user_id, _, scope = value.partition(" ")
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return scope_user(user, RunScope.decode(scope) if scope else None) if user is not None else None


@database_sync_to_async
def _user_from_jwt(raw: str) -> Any:
    auth = RunScopedJWTAuthentication()
    try:
        return auth.get_user(auth.get_validated_token(raw.encode()))
    except (InvalidToken, TokenError, KeyError):
        # get_user raises InvalidToken/AuthenticationFailed for unknown or inactive accounts.
        return None
    except AuthenticationFailed:
        return None


def offered_subprotocols(scope: dict) -> list[str]:
    return list(scope.get("subprotocols") or [])


class AgentAuthMiddleware:
    """Replaces the session user with the agent a JWT subprotocol or a ticket names. A bad token or
    ticket leaves the socket anonymous (the consumer closes it 4401), even if a session exists."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            tokens = [p[len(JWT_PREFIX) :] for p in offered_subprotocols(scope) if p.startswith(JWT_PREFIX)]
            ticket = parse_qs(scope.get("query_string", b"").decode()).get("ticket", [""])[0]
            if tokens or ticket:
                user = None
                if tokens:
                    user = await _user_from_jwt(tokens[0])
                elif ticket:
                    value = await _ticket_redeem(ticket)
                    user = await _ticket_user(value) if value else None
                scope = {**scope, "user": user or AnonymousUser()}
        return await self.inner(scope, receive, send)


class AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only a signed-in account (else closes 4401), choosing `hol.v1` when offered, so an
    agent's browser-less client sees the subprotocol it asked for. Subclasses add `admit()`."""

    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404

    async def connect(self) -> None:
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(self.scope) else None
        user = self.scope.get("user")
        signed_in = user is not None and user.is_authenticated and user.is_active
        if signed_in:
            await self.before_accept()
        # Accept first: a close before accepting turns into an HTTP 403 and loses the close code.
        await self.accept(subprotocol=subprotocol)
        if not signed_in:
            await self.close(code=self.UNAUTHENTICATED)
            return
        self.user = user
        try:
            await self.admit()
        except NotFound:
            await self.close(code=self.NOT_FOUND)
        except PermissionDenied:
            await self.close(code=self.FORBIDDEN)

    async def before_accept(self) -> None:
        """What a subclass must note before the client may think itself connected."""

    async def admit(self) -> None:
        raise NotImplementedError


class OriginGuard:
    """Browsers always send `Origin` on a WebSocket handshake: those are checked against
    ALLOWED_HOSTS (a foreign page cannot ride a person's session). Agents' clients send none; they
    pass without their cookies, so only a JWT subprotocol or a ticket can authenticate them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.validated = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = scope.get("headers") or []
        if any(name == b"origin" for name, _ in headers):
            return await self.validated(scope, receive, send)
        scope = {**scope, "headers": [(name, value) for name, value in headers if name != b"cookie"]}
        return await self.inner(scope, receive, send)
