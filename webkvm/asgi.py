"""ASGI entry point: HTTP through Django, WebSockets through Channels (console, live updates)."""

import os
import sys
import warnings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webkvm.settings")
# Static files are served by WhiteNoise from sync iterators; harmless under ASGI for our small assets.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

from webkvm.config import ConfigError

try:
    from channels.routing import ProtocolTypeRouter
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
    from storage.asgi import StreamedTransfers  # volume uploads and downloads stream through libvirt
    from webkvm.body_limit import BodyLimit
    from webkvm.routing import websocket_application  # needs the apps loaded above
except ConfigError as exc:
    sys.exit(f"webkvm: configuration error: {exc}")

# Consoles (/console/ws/...) and live updates (/live/ws/) are WebSockets on the panel's own origin; each
# consumer checks Origin, session (or, for a console ticket made through the API, its token) and permission
# itself, so no Channels origin or auth middleware is needed.
# Request bodies are capped right in front of Django (webkvm/body_limit.py); the streamed transfers are
# taken out before the cap, since the upload checks login and CSRF (or the API token) and admin before it reads
# a byte.
application = ProtocolTypeRouter({"http": StreamedTransfers(BodyLimit(django_application)),
                                  "websocket": websocket_application()})
