"""HOL's URLs plus two the claim benchmark needs, mounted only under bench.settings:

- POST /bench/floor: JWT authentication and nothing else (the HTTP floor a queue call is
  compared with);
- GET /bench/counters: this process's pid, SQL statements run and CPU seconds used, so the
  benchmark can say where a unit's time goes. Unauthenticated and database-free, so reading it
  costs nothing it would count.
"""

from __future__ import annotations

import os
import time

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from bench._common import StatementCounter
from hol.urls import urlpatterns as hol_urlpatterns

STATEMENTS = StatementCounter()
STATEMENTS.watch_every_connection()


class FloorView(APIView):
    def post(self, request):
        return Response({"ok": True})


class CountersView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"pid": os.getpid(), "statements": STATEMENTS.count, "cpu_seconds": time.process_time()})


urlpatterns = [
    path("bench/floor", FloorView.as_view()),
    path("bench/counters", CountersView.as_view()),
    *hol_urlpatterns,
]
