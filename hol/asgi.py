"""ASGI entry point served by daphne: HTTP through Django, WebSockets through Channels.

An entry point: it prepares the data dir (keys) and, on the embedded defaults, starts the shared
Redis server unless another HOL process already did.
"""

from __future__ import annotations

import os
import sys

from django.core.asgi import get_asgi_application

from hol import datadir
from hol.embedded_redis import start_if_embedded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
# The event loop thread (long-polls, sockets) and the threads of sync views share one interpreter
# lock. At the default 5 ms a view whose database answer has come back can wait that long for the
# loop to let go, once per query; 1 ms keeps a busy loop from slowing every view behind it.
sys.setswitchinterval(0.001)
datadir.prepare()
django_asgi_app = get_asgi_application()
start_if_embedded()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from hol.routing import websocket_urlpatterns  # noqa: E402
from hol.ws_auth import AgentAuthMiddleware, OriginGuard  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginGuard(AuthMiddlewareStack(AgentAuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)
