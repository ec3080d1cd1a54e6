from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    # The WebSocket itself is /console/ws/HOST/UUID/ (console/routing.py, served by Channels).
    path("<slug:host>/<uuid:vm>/", views.console_page, name="page"),
    path("<slug:host>/<uuid:vm>/ticket/", views.ticket, name="ticket"),
    # The serial console's WebSocket is /console/serial/ws/HOST/UUID/ (console/routing.py).
    path("<slug:host>/<uuid:vm>/serial/", views.serial_page, name="serial"),
    path("<slug:host>/<uuid:vm>/serial/ticket/", views.serial_ticket, name="serial_ticket"),
]
