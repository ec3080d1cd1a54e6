from django.urls import path

from console.consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("console/ws/<slug:host>/<uuid:vm>/", ConsoleConsumer.as_asgi()),
]
