from django.urls import path

from console.consumers import ConsoleConsumer
from console.serial_consumer import SerialConsumer

websocket_urlpatterns = [
    path("console/ws/<slug:host>/<uuid:vm>/", ConsoleConsumer.as_asgi()),
    # Outside /console/ws/ on purpose: a reverse proxy that sends that prefix to the standalone VNC
    # proxy (manage.py consoleproxy) still sends serial consoles to the panel, which carries them.
    path("console/serial/ws/<slug:host>/<uuid:vm>/", SerialConsumer.as_asgi()),
]
