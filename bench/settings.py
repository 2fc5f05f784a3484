"""HOL's settings plus the benchmark's own URLs (the HTTP floor and per-process counters), for the
daphne processes bench/claim.py starts. Production never loads this module."""

from hol.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
