from django.urls import path

from instances.views import actions, create, delete, detail, flavors, fleet

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
    path("new/", create.create, name="create"),  # ?host=NAME&flavor=ID
    path("flavors/", flavors.flavor_list, name="flavors"),
    path("flavors/new/", flavors.flavor_create, name="flavor_create"),
    path("flavors/<int:pk>/edit/", flavors.flavor_edit, name="flavor_edit"),
    path("flavors/<int:pk>/delete/", flavors.flavor_delete, name="flavor_delete"),
    path("<slug:host>/<uuid:vm>/delete/", delete.delete, name="delete"),
]
