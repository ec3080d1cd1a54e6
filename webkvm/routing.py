"""Every WebSocket route of the panel: consoles (console/routing.py), live updates and job progress."""

from django.urls import path

from console.routing import websocket_urlpatterns as console_routes
from instances.consumers import LiveConsumer
from jobs.consumers import JobConsumer

websocket_urlpatterns = [
    *console_routes,
    path("live/ws/", LiveConsumer.as_asgi()),
    path("jobs/ws/<int:job_id>/", JobConsumer.as_asgi()),
]
