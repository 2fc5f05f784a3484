"""Install HOL's housekeeping into django-celery-beat's database schedule (idempotent)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask


class Command(BaseCommand):
    help = "Create or update the Beat periodic tasks named in settings.HOL_BEAT_SCHEDULE."

    def handle(self, *args, **options) -> None:
        for task_name, seconds in settings.HOL_BEAT_SCHEDULE.items():
            interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
            PeriodicTask.objects.update_or_create(
                name=task_name, defaults={"task": task_name, "interval": interval, "enabled": True}
            )
            self.stdout.write(f"beat: {task_name} every {seconds}s")
