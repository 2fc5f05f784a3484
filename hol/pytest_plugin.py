"""The test run is a HOL entry point like manage.py: before pytest-django imports the settings,
the data dir and its secret keys are made (`addopts = -p hol.pytest_plugin` in pyproject.toml;
a conftest.py is read only after the settings)."""

from __future__ import annotations

import pytest

from hol import datadir


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    datadir.prepare()
