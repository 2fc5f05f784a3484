"""Reading settings from the environment: the helpers `hol/settings.py` uses for every knob."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from hol import datadir


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(variable: str, data_dir: Path, file_name: str) -> str:
    """A secret from the environment, else from its file in the data dir (made by the entry points,
    see hol.datadir). There is no fallback: no string in the repository ever signs anything."""
    value = os.environ.get(variable) or datadir.read_secret(data_dir, file_name)
    if not value:
        raise ImproperlyConfigured(
            f"{variable} is not set and {data_dir / file_name} does not exist: start HOL through "
            "./bin/hol (run, manage, test) or manage.py, which create it, or set the variable."
        )
    return value
