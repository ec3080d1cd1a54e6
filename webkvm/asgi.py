"""ASGI entry point: HTTP through Django, WebSockets through Channels (console, live updates)."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webkvm.settings")

from webkvm.config import ConfigError

try:
    from channels.routing import ProtocolTypeRouter
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
except ConfigError as exc:
    sys.exit(f"webkvm: configuration error: {exc}")

application = ProtocolTypeRouter({"http": django_application})
