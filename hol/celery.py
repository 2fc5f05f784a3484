from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")

app = Celery("hol")


@app.on_configure.connect
def _prepare_data_dir(**kwargs) -> None:
    """A `celery -A hol worker|beat` started on its own is an entry point like manage.py: the
    data dir's keys must exist before the settings read them. Processes whose settings are
    already loaded (web, tests) prepared theirs at start."""
    from django.conf import settings

    if not settings.configured:
        from hol import datadir

        datadir.prepare()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _start_embedded_redis(**kwargs) -> None:
    """A worker or Beat on the embedded defaults needs the embedded broker; this module is imported
    by every `import hol`, so the server is started here, when one of them starts, not on import."""
    from hol.embedded_redis import start_if_embedded

    start_if_embedded()
