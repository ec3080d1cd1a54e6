"""Every WebSocket route of the panel: consoles (console/routing.py) and live updates."""

from django.urls import path

from console.routing import websocket_urlpatterns as console_routes
from instances.consumers import LiveConsumer

websocket_urlpatterns = [
    *console_routes,
    path("live/ws/", LiveConsumer.as_asgi()),
]
