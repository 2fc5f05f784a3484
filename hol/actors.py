"""Who is acting: humans, agent service accounts (the `agent` role), or HOL itself (SYSTEM).

Every service takes an explicit actor. Beat and Celery act as `SYSTEM`, which the audit log
records as `system`; there is no "no actor" that could slip past a permission check.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

AGENT_GROUP = "agent"


class SystemActor:
    """HOL itself: Beat housekeeping, Celery runs, auto-approval. Not a user account."""

    pk = None
    id = None
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    username = "system"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM = SystemActor()

Actor = AbstractBaseUser | SystemActor


def is_system(actor: Any) -> bool:
    return actor is SYSTEM


def require_actor(actor: Any) -> Actor:
    """Services refuse a missing actor instead of treating it as 'skip the checks'."""
    if actor is None:
        raise TypeError("an actor is required; HOL itself acts as hol.actors.SYSTEM")
    return actor


def is_agent(user: Any) -> bool:
    if user is None or is_system(user) or not user.is_authenticated:
        return False
    cached = getattr(user, "_hol_is_agent", None)
    if cached is None:
        cached = user.groups.filter(name=AGENT_GROUP).exists()
        user._hol_is_agent = cached
    return cached


def actor_type(actor: Any) -> str:
    if is_system(require_actor(actor)):
        return "system"
    return "agent" if is_agent(actor) else "human"


def actor_label(actor: Any) -> str:
    return require_actor(actor).get_username()
