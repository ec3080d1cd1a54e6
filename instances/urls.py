from django.urls import path

from instances.views import actions, bulk, create, create_image, delete, detail, flavors, fleet, quotas
from instances.views.boot import boot_settings
from instances.views.clone import clone_start
from instances.views.disks import (
    cdrom_add,
    cdrom_eject,
    cdrom_insert,
    cdrom_remove,
    disk_attach,
    disk_detach,
    disk_page,
)
from instances.views.evacuate import evacuate
from instances.views.graphics import vnc_settings
from instances.views.migrate import migrate_many, migrate_vm
from instances.views.nics import nic_add, nic_link, nic_page, nic_remove, nic_source
from instances.views.resize import resize
from instances.views.share import share
from instances.views.snapshots import snapshot_create, snapshot_delete, snapshot_list, snapshot_revert
from instances.views.xmledit import xml_edit, xml_history, xml_rollback

app_name = "instances"
urlpatterns = [
    # The fleet view (every host) and one host's VMs; rows.json feeds live updates.
    path("", fleet.fleet, name="list"),
    path("rows.json", fleet.rows, name="rows"),
    path("host/<slug:host>/", fleet.host_fleet, name="host"),
    path("bulk/", bulk.bulk, name="bulk"),  # start, shut down, force off, delete the ticked VMs
    # One VM: host name + UUID (names change, UUIDs do not).
    path("<slug:host>/<uuid:vm>/", detail.detail, name="detail"),
    path("<slug:host>/<uuid:vm>/stats.json", detail.stats, name="stats"),
    path("<slug:host>/<uuid:vm>/action/<slug:action>/", actions.action, name="action"),
    path("<slug:host>/<uuid:vm>/rename/", actions.rename, name="rename"),
    path("<slug:host>/<uuid:vm>/describe/", actions.describe, name="describe"),
    path("<slug:host>/<uuid:vm>/share/", share, name="share"),
    # Create, delete and flavors: instances/views/create.py, delete.py, flavors.py.
    path("new/", create.create, name="create"),  # ?host=NAME&flavor=ID
    # From a cloud image with cloud-init (instances/views/create_image.py): an admin's, and a user's within a quota.
    path("new/image/<slug:host>/", create_image.create_image, name="create_image"),
    path("new-from-image/", create_image.create_own, name="create_own"),  # ?host=NAME
    path("flavors/", flavors.flavor_list, name="flavors"),
    path("flavors/new/", flavors.flavor_create, name="flavor_create"),
    path("flavors/<int:pk>/edit/", flavors.flavor_edit, name="flavor_edit"),
    path("flavors/<int:pk>/delete/", flavors.flavor_delete, name="flavor_delete"),
    path("<slug:host>/<uuid:vm>/delete/", delete.delete, name="delete"),
    # Self-service quotas (admins) and a user's own: instances/views/quotas.py.
    path("quotas/", quotas.quota_list, name="quotas"),
    path("quotas/new/", quotas.quota_create, name="quota_create"),
    path("quotas/<int:pk>/edit/", quotas.quota_edit, name="quota_edit"),
    path("quotas/<int:pk>/delete/", quotas.quota_delete, name="quota_delete"),
    path("quota/", quotas.my_quota, name="my_quota"),
    # Disks, CD-ROM drives and NICs: instances/views/disks.py, nics.py.
    path("<slug:host>/<uuid:vm>/disks/", disk_page, name="disks"),
    path("<slug:host>/<uuid:vm>/disks/attach/", disk_attach, name="disk_attach"),
    path("<slug:host>/<uuid:vm>/disks/detach/", disk_detach, name="disk_detach"),
    path("<slug:host>/<uuid:vm>/cdrom/insert/", cdrom_insert, name="cdrom_insert"),
    path("<slug:host>/<uuid:vm>/cdrom/eject/", cdrom_eject, name="cdrom_eject"),
    path("<slug:host>/<uuid:vm>/cdrom/add/", cdrom_add, name="cdrom_add"),
    path("<slug:host>/<uuid:vm>/cdrom/remove/", cdrom_remove, name="cdrom_remove"),
    path("<slug:host>/<uuid:vm>/nics/", nic_page, name="nics"),
    path("<slug:host>/<uuid:vm>/nics/add/", nic_add, name="nic_add"),
    path("<slug:host>/<uuid:vm>/nics/remove/", nic_remove, name="nic_remove"),
    path("<slug:host>/<uuid:vm>/nics/source/", nic_source, name="nic_source"),
    path("<slug:host>/<uuid:vm>/nics/link/", nic_link, name="nic_link"),
    # The raw XML editor (admins only): instances/views/xmledit.py.
    path("<slug:host>/<uuid:vm>/xml/", xml_edit, name="xml_edit"),
    path("<slug:host>/<uuid:vm>/xml/history/", xml_history, name="xml_history"),
    path("<slug:host>/<uuid:vm>/xml/history/<int:pk>/rollback/", xml_rollback, name="xml_rollback"),
    # Clone, snapshots, resize, boot settings, VNC settings: instances/views/clone.py, snapshots.py, resize.py,
    # boot.py, graphics.py.
    path("<slug:host>/<uuid:vm>/clone/", clone_start, name="clone"),
    path("<slug:host>/<uuid:vm>/snapshots/", snapshot_list, name="snapshots"),
    path("<slug:host>/<uuid:vm>/snapshots/create/", snapshot_create, name="snapshot_create"),
    path("<slug:host>/<uuid:vm>/snapshots/revert/", snapshot_revert, name="snapshot_revert"),
    path("<slug:host>/<uuid:vm>/snapshots/delete/", snapshot_delete, name="snapshot_delete"),
    path("<slug:host>/<uuid:vm>/resize/", resize, name="resize"),
    path("<slug:host>/<uuid:vm>/boot/", boot_settings, name="boot"),
    path("<slug:host>/<uuid:vm>/vnc/", vnc_settings, name="vnc"),
    # Migration, several VMs from the fleet view, host evacuation: instances/views/migrate.py, evacuate.py.
    path("<slug:host>/<uuid:vm>/migrate/", migrate_vm, name="migrate"),
    path("migrate/", migrate_many, name="migrate_many"),
    path("host/<slug:host>/evacuate/", evacuate, name="evacuate"),
]
