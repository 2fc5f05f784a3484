"""The test run is a HOL entry point like manage.py: before pytest-django imports the settings,
the data dir and its secret keys are made (`addopts = -p hol.pytest_plugin` in pyproject.toml;
a conftest.py is read only after the settings). On the embedded defaults the run also stops, at
its end, the Redis that anything in it started (a test module importing `hol.asgi` starts it
during collection, before any fixture could note who did)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hol import datadir
from hol.embedded_redis import answers_ping, stop

_embedded_socket: Path | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    global _embedded_socket
    data_dir = datadir.prepare()
    socket = Path(data_dir) / "redis.sock"
    if not os.environ.get("REDIS_URL") and not answers_ping(socket):
        _embedded_socket = socket


def pytest_unconfigure(config) -> None:
    if _embedded_socket is not None:
        stop(_embedded_socket)
