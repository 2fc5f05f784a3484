"""Who is acting: humans, agent service accounts (the `agent` role), or HOL itself."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

AGENT_GROUP = "agent"


def is_agent(user: AbstractBaseUser | None) -> bool:
    if user is None or not user.is_authenticated:
        return False
    cached = getattr(user, "_hol_is_agent", None)
    if cached is None:
        cached = user.groups.filter(name=AGENT_GROUP).exists()
        user._hol_is_agent = cached
    return cached


def actor_type(user: AbstractBaseUser | None) -> str:
    if user is None:
        return "system"
    return "agent" if is_agent(user) else "human"


def actor_label(user: AbstractBaseUser | None) -> str:
    return "system" if user is None else user.get_username()
