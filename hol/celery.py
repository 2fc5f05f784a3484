from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")

app = Celery("hol")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _start_embedded_redis(**kwargs) -> None:
    """A worker or Beat on the embedded defaults needs the embedded broker; this module is imported
    by every `import hol`, so the server is started here, when one of them starts, not on import."""
    from hol.embedded_redis import start_if_embedded

    start_if_embedded()
