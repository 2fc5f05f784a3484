from __future__ import annotations

from django.apps import AppConfig


class HolConfig(AppConfig):
    """HOL's shared plumbing as an app: its signal receivers (token revocation) connect here."""

    name = "hol"
    verbose_name = "HOL"

    def ready(self) -> None:
        from hol import (
            auth,  # noqa: F401 - connects the revocation receivers
            schema,  # noqa: F401 - registers the schema extension of HOL's JWT authentication
        )
