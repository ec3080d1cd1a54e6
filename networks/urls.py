from django.urls import path

from networks import actions, views

app_name = "networks"
urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:host>/", views.host_list, name="list"),
    path("<slug:host>/interfaces/", views.interfaces, name="interfaces"),
    path("<slug:host>/new/", views.create, name="create"),
    # One network: by name (libvirt refuses '/' in network names, so <str:> always fits).
    path("<slug:host>/net/<str:name>/", views.detail, name="detail"),
    path("<slug:host>/net/<str:name>/hosts/add/", actions.host_add, name="host_add"),
    path("<slug:host>/net/<str:name>/hosts/remove/", actions.host_remove, name="host_remove"),
    # stop and delete: a confirmation page (GET), then POST with confirm=yes.
    path("<slug:host>/net/<str:name>/<slug:action>/confirm/", actions.confirmed, name="confirm"),
    # start, autostart, no-autostart: POST only.
    path("<slug:host>/net/<str:name>/<slug:action>/", actions.action, name="action"),
]
