from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    # The WebSocket itself is /console/ws/HOST/UUID/ (console/routing.py, served by Channels).
    path("<slug:host>/<uuid:vm>/", views.console_page, name="page"),
    path("<slug:host>/<uuid:vm>/ticket/", views.ticket, name="ticket"),
]
