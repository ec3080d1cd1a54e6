from django.urls import path

from instances.views import actions, detail, fleet

app_name = "instances"
urlpatterns = [
    # The fleet view (every host) and one host's VMs; rows.json feeds live updates.
    path("", fleet.fleet, name="list"),
    path("rows.json", fleet.rows, name="rows"),
    path("host/<slug:host>/", fleet.host_fleet, name="host"),
    # One VM: host name + UUID (names change, UUIDs do not).
    path("<slug:host>/<uuid:vm>/", detail.detail, name="detail"),
    path("<slug:host>/<uuid:vm>/stats.json", detail.stats, name="stats"),
    path("<slug:host>/<uuid:vm>/action/<slug:action>/", actions.action, name="action"),
    path("<slug:host>/<uuid:vm>/rename/", actions.rename, name="rename"),
    path("<slug:host>/<uuid:vm>/describe/", actions.describe, name="describe"),
    # Create, delete and flavors: instances/views/create.py, delete.py, flavors.py.
]
