"""Self-service quotas (instances/quotas.py, instances/views/quotas.py): the table of over-quota requests, the
race, the group/user rule, usage freed on delete (libvirt as witness) and reconciled, the admin pages' bad
input, and what a user may choose from."""

from __future__ import annotations

import datetime
import re
import threading
import time
import uuid
from typing import Any

import libvirt
import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from instances import quotas
from instances.host_rows import host_rows
from instances.models import Flavor, OwnedVM, Quota
from instances.quotas import GIB, QuotaExceeded
from instances.state_since import apply
from storage.models import CloudImage
from tests.conftest import BASIC_WORLD, DB_01_UUID, PASSWORD, WEB_01_UUID
from tests.unit.test_api_access import TokenClient
from webkvm.models import AuditEvent, SharedKind, SharedResource, VMGrant

MIB = 1024 * 1024


def _user(name: str = "carol") -> Any:
    return get_user_model().objects.create_user(name, "", PASSWORD)


def _quota(host: Host, *, user: Any = None, group: Group | None = None, vms: int = 2, vcpus: int = 4,
           memory: int = 4096, disk: int = 20) -> Quota:
    quota = Quota.objects.create(user=user, group=group, max_vms=vms, max_vcpus=vcpus, max_memory_mib=memory,
                                 max_disk_gib=disk)
    quota.hosts.add(host)
    return quota


def _image(host: Host, name: str) -> CloudImage:
    return CloudImage.objects.create(host=host, pool="images", volume=f"{name}.qcow2", name=name,
                                     min_disk_bytes=GIB, format="qcow2", virtual_bytes=2 * GIB)


# --- the table of over-quota requests ----------------------------------------------------------------------

# The quota: 2 VMs, 4 vCPUs, 4096 MiB, 20 GiB; already used: 1 VM of 2 vCPUs, 2048 MiB, 10 GiB.
TABLE = [
    ("exactly what is left", dict(vcpus=2, memory_mib=2048, disk_bytes=10 * GIB), []),
    ("one vCPU over", dict(vcpus=3, memory_mib=1024, disk_bytes=GIB), ["2 of 4 vCPUs left, 3 asked"]),
    ("memory over", dict(vcpus=1, memory_mib=2049, disk_bytes=GIB),
     ["2048 of 4096 MiB memory left, 2049 MiB asked"]),
    ("disk over by a byte", dict(vcpus=1, memory_mib=512, disk_bytes=10 * GIB + 1),
     ["10 of 20 GiB disk left, 10.1 GiB asked"]),
    ("everything over at once", dict(vcpus=8, memory_mib=8192, disk_bytes=30 * GIB),
     ["2 of 4 vCPUs left, 8 asked", "2048 of 4096 MiB memory left, 8192 MiB asked",
      "10 of 20 GiB disk left, 30 GiB asked"]),
]


@pytest.mark.parametrize(("case", "want", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_over_quota_requests_are_refused_with_what_is_left(test_host: Host, case: str, want: dict[str, int],
                                                           expected: list[str]) -> None:
    carol = _user()
    _quota(test_host, user=carol)
    quotas.reserve(carol, test_host, "first", vcpus=2, memory_mib=2048, disk_bytes=10 * GIB)
    if not expected:
        owned = quotas.reserve(carol, test_host, "second", **want)
        assert owned.vm_uuid is None and OwnedVM.objects.filter(user=carol).count() == 2
        assert quotas.left(carol) == "0 of 2 VMs, 0 of 4 vCPUs, 0 of 4096 MiB memory, 0 of 20 GiB disk left"
        return
    with pytest.raises(QuotaExceeded) as refused:
        quotas.reserve(carol, test_host, "second", **want)
    assert refused.value.problems == expected
    assert str(refused.value) == "Over quota: " + "; ".join(expected) + "."
    assert OwnedVM.objects.filter(user=carol).count() == 1, "nothing reserved"


def test_the_vm_count_and_zero_limits(test_host: Host) -> None:
    carol = _user()
    _quota(test_host, user=carol, vms=1)
    quotas.reserve(carol, test_host, "only", vcpus=1, memory_mib=512, disk_bytes=GIB)
    with pytest.raises(QuotaExceeded, match="0 of 1 VMs left"):
        quotas.reserve(carol, test_host, "another", vcpus=1, memory_mib=512, disk_bytes=GIB)
    dave = _user("dave")
    _quota(test_host, user=dave, vms=0, vcpus=0, memory=0, disk=0)
    with pytest.raises(QuotaExceeded) as refused:
        quotas.reserve(dave, test_host, "x", vcpus=1, memory_mib=1, disk_bytes=1)
    assert refused.value.problems == ["0 of 0 VMs left", "0 of 0 vCPUs left, 1 asked",
                                      "0 of 0 MiB memory left, 1 MiB asked", "0 of 0 GiB disk left, 0.1 GiB asked"]


def test_no_quota_and_a_host_not_allowed(test_host: Host) -> None:
    carol = _user()
    assert quotas.limits_for(carol) is None
    assert quotas.left(carol).startswith("You have no quota")
    with pytest.raises(QuotaExceeded, match="you have no quota"):
        quotas.reserve(carol, test_host, "x", vcpus=1, memory_mib=512, disk_bytes=GIB)
    other = Host.objects.create(name="otherhost", transport="test", path=str(BASIC_WORLD))
    _quota(other, user=carol)
    with pytest.raises(QuotaExceeded, match="host testhost is not one you may use"):
        quotas.reserve(carol, test_host, "x", vcpus=1, memory_mib=512, disk_bytes=GIB)
    assert not OwnedVM.objects.exists()


def test_an_inactive_user_has_no_quota(test_host: Host) -> None:
    carol = _user()
    _quota(test_host, user=carol)
    carol.is_active = False
    carol.save()
    assert quotas.limits_for(carol) is None


# --- the race -------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_two_creations_racing_past_the_quota_one_is_refused(test_host: Host) -> None:
    """Two threads (two database connections) reserve the last VM of the quota at the same moment: exactly
    one wins. SQLite: IMMEDIATE transactions; PostgreSQL: SELECT ... FOR UPDATE on the quota row."""
    carol = _user()
    _quota(test_host, user=carol, vms=1)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def create(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            quotas.reserve(carol, test_host, name, vcpus=1, memory_mib=512, disk_bytes=GIB)
            results.append("won")
        except QuotaExceeded as exc:
            results.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(f"vm-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["Over quota: 0 of 1 VMs left.", "won"]
    assert OwnedVM.objects.filter(user=carol).count() == 1


# --- groups and users ---------------------------------------------------------------------------------

def test_own_quota_wins_else_the_largest_of_the_groups(test_host: Host) -> None:
    other = Host.objects.create(name="otherhost", transport="test", path=str(BASIC_WORLD))
    carol = _user()
    small, big = Group.objects.create(name="small"), Group.objects.create(name="big")
    carol.groups.add(small, big)
    _quota(test_host, group=small, vms=5, vcpus=2, memory=1024, disk=100)
    _quota(other, group=big, vms=1, vcpus=8, memory=8192, disk=10)
    limits = quotas.limits_for(carol)
    assert limits is not None
    assert (limits.max_vms, limits.max_vcpus, limits.max_memory_mib, limits.max_disk_gib) == (5, 8, 8192, 100)
    assert limits.source == "the quotas of groups big, small"
    assert set(quotas.allowed(carol).hosts) == {test_host, other}, "what any of the groups allows"
    # Each member uses the group's quota on their own: another member's VMs do not count.
    dave = _user("dave")
    dave.groups.add(small)
    quotas.reserve(dave, test_host, "daves", vcpus=2, memory_mib=1024, disk_bytes=GIB)
    quotas.reserve(carol, test_host, "carols", vcpus=8, memory_mib=8192, disk_bytes=GIB)
    # Her own quota wins, even when it is smaller than her groups'.
    _quota(other, user=carol, vms=3, vcpus=1, memory=512, disk=5)
    limits = quotas.limits_for(carol)
    assert limits is not None and (limits.max_vcpus, limits.source) == (1, "your own quota")
    assert list(quotas.allowed(carol).hosts) == [other]
    with pytest.raises(QuotaExceeded, match="0 of 1 vCPUs left, 1 asked"):
        quotas.reserve(carol, other, "more", vcpus=1, memory_mib=1, disk_bytes=1)


# --- owning, freeing -------------------------------------------------------------------------------------

def _domains(host: Host) -> set[str]:
    return set(services.call(host, lambda conn: [d.UUIDString() for d in conn.listAllDomains(0)]))


def test_the_owner_gets_every_grant_and_deleting_frees_the_quota(test_host: Host) -> None:
    carol = _user()
    _quota(test_host, user=carol, vms=1)
    owned = quotas.reserve(carol, test_host, "web-01", vcpus=1, memory_mib=512, disk_bytes=GIB)
    quotas.confirm(owned, WEB_01_UUID)
    grant = VMGrant.objects.get(user=carol, host=test_host, vm_uuid=WEB_01_UUID)
    assert grant.permissions() == ["view", "console", "power", "change", "delete"]
    client = Client()
    client.force_login(carol)
    response = client.post(f"/instances/testhost/{WEB_01_UUID}/delete/", {"force_off": "1"})
    assert response.status_code == 302
    assert WEB_01_UUID not in _domains(test_host), "libvirt no longer has it"
    assert not OwnedVM.objects.exists() and not VMGrant.objects.filter(user=carol).exists()
    assert quotas.usage(carol) == quotas.Usage()
    quotas.reserve(carol, test_host, "again", vcpus=1, memory_mib=512, disk_bytes=GIB)


def test_bulk_delete_frees_the_quota_too(test_host: Host) -> None:
    carol = _user()
    _quota(test_host, user=carol)
    quotas.confirm(quotas.reserve(carol, test_host, "db-01", vcpus=1, memory_mib=512, disk_bytes=GIB), DB_01_UUID)
    client = Client()
    client.force_login(carol)
    client.post("/instances/bulk/", {"action": "delete", "vm": f"testhost/{DB_01_UUID}", "confirm": "yes",
                                     "force_off": "1"})
    if DB_01_UUID in _domains(test_host):
        pytest.fail("bulk delete did not delete db-01: see instances/views/bulk.py's form")
    assert not OwnedVM.objects.exists()


def test_a_vm_deleted_outside_the_panel_is_reconciled_on_the_next_host_read(test_host: Host) -> None:
    carol = _user()
    _quota(test_host, user=carol, vms=4)
    long_ago = timezone.now() - datetime.timedelta(minutes=10)
    gone = OwnedVM.objects.create(user=carol, host=test_host, vm_uuid=uuid.uuid4(), name="gone", vcpus=1,
                                  memory_mib=1, disk_bytes=1, confirmed=long_ago)
    kept = OwnedVM.objects.create(user=carol, host=test_host, vm_uuid=WEB_01_UUID, name="web-01", vcpus=1,
                                  memory_mib=1, disk_bytes=1, confirmed=long_ago)
    just_made = OwnedVM.objects.create(user=carol, host=test_host, vm_uuid=uuid.uuid4(), name="new", vcpus=1,
                                       memory_mib=1, disk_bytes=1, confirmed=timezone.now())
    pending = OwnedVM.objects.create(user=carol, host=test_host, name="being made", vcpus=1, memory_mib=1,
                                     disk_bytes=1)
    dead = OwnedVM.objects.create(user=carol, host=test_host, name="never made", vcpus=1, memory_mib=1, disk_bytes=1)
    OwnedVM.objects.filter(pk=dead.pk).update(created=timezone.now() - datetime.timedelta(days=2))
    apply(test_host, host_rows(test_host))  # what the fleet pages and live updates do with each read
    left = set(OwnedVM.objects.values_list("pk", flat=True))
    assert left == {kept.pk, just_made.pk, pending.pk}
    assert gone.pk not in left and dead.pk not in left


# --- what a user may choose from ---------------------------------------------------------------------------

def test_a_user_sees_only_what_their_quota_opens(test_host: Host) -> None:
    other = Host.objects.create(name="otherhost", transport="test", path=str(BASIC_WORLD))
    carol = _user()
    quota = _quota(test_host, user=carol)
    mine, theirs, elsewhere = _image(test_host, "debian-12"), _image(test_host, "secret"), _image(other, "debian-12")
    pool = SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="images")
    SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="other-pool")  # opened, not to her
    net = SharedResource.objects.create(host=test_host, kind=SharedKind.NETWORK, name="lan")
    off_host = SharedResource.objects.create(host=other, kind=SharedKind.NETWORK, name="lan")
    small, _ = Flavor.objects.get_or_create(name="small", defaults={"vcpus": 1, "memory_mib": 512, "disk_gib": 5})
    Flavor.objects.create(name="huge", vcpus=64, memory_mib=65536, disk_gib=1000)
    quota.images.add(mine, elsewhere)  # an image of a host she may not use stays out
    quota.shared.add(pool, net, off_host)
    quota.flavors.add(small)
    chosen = quotas.allowed(carol)
    assert (list(chosen.hosts), list(chosen.images), list(chosen.flavors)) == ([test_host], [mine], [small])
    assert (list(chosen.pools), list(chosen.networks)) == ([pool], [net])
    assert theirs not in chosen.images
    assert not quotas.allowed(_user("nobody")).images.exists()

    class CreateForm(quotas.QuotaChoicesMixin, forms.Form):
        host = forms.ModelChoiceField(queryset=Host.objects.all())
        image = forms.ModelChoiceField(queryset=CloudImage.objects.all())
        flavor = forms.ModelChoiceField(queryset=Flavor.objects.all(), required=False)
        pool = forms.ChoiceField(choices=[("images", "images"), ("other-pool", "other-pool")])
        network = forms.ChoiceField(choices=[("", "---"), ("lan", "lan"), ("wan", "wan")])

    form = CreateForm({"host": test_host.pk, "image": theirs.pk, "pool": "other-pool", "network": "wan"})
    form.limit_to(carol)
    assert [value for value, _ in form.fields["pool"].choices] == ["images"]
    assert [value for value, _ in form.fields["network"].choices] == ["", "lan"]
    assert not form.is_valid()
    assert set(form.errors) == {"image", "pool", "network"}


def test_sizes_of_ones_own_only_when_a_quota_of_theirs_allows_them(test_host: Host) -> None:
    """custom_sizes: the union over the quotas that apply (their own wins over their groups')."""
    carol = _user()
    strict, free = Group.objects.create(name="strict"), Group.objects.create(name="free")
    carol.groups.add(strict, free)
    Quota.objects.filter(pk=_quota(test_host, group=strict).pk).update(custom_sizes=False)
    free_quota = _quota(test_host, group=free)
    assert free_quota.custom_sizes and quotas.allowed(carol).custom_sizes, "one of her groups allows them"
    Quota.objects.filter(pk=free_quota.pk).update(custom_sizes=False)
    assert not quotas.allowed(carol).custom_sizes
    Quota.objects.filter(pk=free_quota.pk).update(custom_sizes=True)
    own = _quota(test_host, user=carol)
    Quota.objects.filter(pk=own.pk).update(custom_sizes=False)
    assert not quotas.allowed(carol).custom_sizes, "her own quota wins"
    assert not quotas.allowed(_user("nobody")).custom_sizes


def test_custom_sizes_on_the_quota_form_and_the_api(admin_client: Client, test_host: Host) -> None:
    carol = _user()
    form = admin_client.get("/instances/quotas/new/").content.decode()
    assert re.search(r'<input type="checkbox" name="custom_sizes"[^>]* checked>', form), "ticked by default"
    assert "Users may choose their own vCPUs and memory" in form
    assert _post(admin_client, {"user": "carol", "hosts": "testhost"}).status_code == 302  # the box unticked
    quota = Quota.objects.get(user=carol)
    assert not quota.custom_sizes
    assert 'data-col="custom_sizes">(flavors only)' in admin_client.get("/instances/quotas/").content.decode()
    mine = Client()
    mine.force_login(carol)
    assert re.search(r'id="custom-sizes">no: one of the flavors<', mine.get("/instances/quota/").content.decode())
    edit = f"/instances/quotas/{quota.pk}/edit/"
    assert _post(admin_client, {"user": "carol", "hosts": "testhost", "custom_sizes": "on"}, edit).status_code == 302
    quota.refresh_from_db()
    assert quota.custom_sizes
    api = TokenClient(ApiToken.make(get_user_model().objects.create_superuser("api-root", "", "x"), "t")[1])
    url = f"/api/v1/quotas/{quota.pk}/"
    assert api.get(url).json()["custom_sizes"] is True
    patched = api.call("PATCH", url, {"custom_sizes": False})
    assert patched.status_code == 200 and patched.json()["custom_sizes"] is False, patched.content
    quota.refresh_from_db()
    assert not quota.custom_sizes
    dave = _user("dave")
    made = api.post("/api/v1/quotas/", {"user": "dave", "max_vms": 1, "hosts": ["testhost"]})
    assert made.status_code == 201 and made.json()["custom_sizes"] is True, "left out: the default, allowed"
    own = TokenClient(ApiToken.make(dave, "t")[1])
    assert own.get("/api/v1/usage/").json()["results"][0]["allowed"]["custom_sizes"] is True


def test_my_quota_page_shows_only_mine(test_host: Host) -> None:
    carol, dave = _user(), _user("dave")
    _quota(test_host, user=carol, vms=3)
    _quota(test_host, user=dave)
    quotas.reserve(dave, test_host, "daves-secret-vm", vcpus=1, memory_mib=512, disk_bytes=GIB)
    quotas.reserve(carol, test_host, "carols-vm", vcpus=1, memory_mib=512, disk_bytes=GIB)
    client = Client()
    client.force_login(carol)
    html = client.get("/instances/quota/").content.decode()
    assert "carols-vm" in html and "daves-secret-vm" not in html
    assert "1 of 3 VMs, 1 of 4 vCPUs, 512 of 4096 MiB memory, 1 of 20 GiB disk" in html
    assert "2 of 3 VMs, 3 of 4 vCPUs, 3584 of 4096 MiB memory, 19 of 20 GiB disk left" in html
    nobody = Client()
    nobody.force_login(_user("erin"))
    assert "You have no quota" in nobody.get("/instances/quota/").content.decode()


# --- the admin pages --------------------------------------------------------------------------------------

def _post(client: Client, data: dict[str, Any], url: str = "/instances/quotas/new/") -> Any:
    base = {"max_vms": "2", "max_vcpus": "4", "max_memory_mib": "4096", "max_disk_gib": "20"}
    return client.post(url, {**base, **data})


BAD = [
    ("negative", {"user": "carol", "max_vcpus": "-1"}, "max_vcpus", "greater than or equal to 0"),
    ("not a number", {"user": "carol", "max_memory_mib": "lots"}, "max_memory_mib", "Enter a whole number"),
    ("huge", {"user": "carol", "max_vms": "10000000000"}, "max_vms", "less than or equal to"),
    ("a user and a group", {"user": "carol", "group": "devs"}, "group", "Choose a user or a group, not both."),
    ("neither", {}, "user", "Choose the user (or the group) this quota is for."),
    ("unknown user", {"user": "nobody"}, "user", "Select a valid choice"),
    ("an admin", {"user": "root-admin"}, "user", "Select a valid choice"),
    ("an image of a host not allowed", {"user": "carol", "images": "IMAGE"}, "images",
     "On a host this quota does not allow: debian-12@testhost."),
]


@pytest.mark.parametrize(("case", "data", "field", "words"), BAD, ids=[row[0] for row in BAD])
def test_bad_quota_input_gets_field_errors_and_changes_nothing(admin_client: Client, test_host: Host, case: str,
                                                               data: dict[str, str], field: str,
                                                               words: str) -> None:
    _user()
    Group.objects.create(name="devs")
    image = _image(test_host, "debian-12")
    data = {k: (str(image.pk) if v == "IMAGE" else v) for k, v in data.items()}
    response = _post(admin_client, data)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and words in " ".join(errors[field]), errors
    assert not Quota.objects.exists() and not AuditEvent.objects.filter(action="quota.set").exists()


def test_an_admin_sets_edits_and_deletes_a_quota_audited(admin_client: Client, test_host: Host) -> None:
    carol = _user()
    image = _image(test_host, "debian-12")
    response = _post(admin_client, {"user": "carol", "hosts": "testhost", "images": str(image.pk)})
    assert response.status_code == 302
    quota = Quota.objects.get(user=carol)
    assert list(quota.hosts.all()) == [test_host] and list(quota.images.all()) == [image]
    record = AuditEvent.objects.get(action="quota.set")
    assert record.object_name == "user carol" and "2 VMs, 4 vCPUs" in record.detail
    assert _post(admin_client, {"user": "carol"}).context["form"].errors["user"] == [
        "This user has a quota already: edit that one."]
    quotas.reserve(carol, test_host, "x", vcpus=2, memory_mib=1024, disk_bytes=5 * GIB)
    listing = admin_client.get("/instances/quotas/").content.decode()
    assert "1 of 2 VMs, 2 of 4 vCPUs, 1024 of 4096 MiB memory, 5 of 20 GiB disk" in listing
    edit = admin_client.get(f"/instances/quotas/{quota.pk}/edit/")
    assert edit.context["form"]["user"].value() == "carol"
    response = _post(admin_client, {"user": "carol", "max_vms": "5", "hosts": "testhost"},
                     f"/instances/quotas/{quota.pk}/edit/")
    assert response.status_code == 302
    quota.refresh_from_db()
    assert quota.max_vms == 5 and not quota.images.exists()
    assert admin_client.post(f"/instances/quotas/{quota.pk}/delete/").status_code == 302
    assert not Quota.objects.exists() and OwnedVM.objects.filter(user=carol).exists(), "her VMs stay hers"
    assert AuditEvent.objects.filter(action="quota.delete", object_name="user carol", result="ok").exists()


def test_a_group_quota_lists_each_members_usage(admin_client: Client, test_host: Host) -> None:
    devs = Group.objects.create(name="devs")
    carol, dave = _user(), _user("dave")
    devs.user_set.add(carol, dave)
    _quota(test_host, group=devs)
    _quota(test_host, user=dave, vms=9)
    started = time.monotonic()
    html = admin_client.get("/instances/quotas/").content.decode()
    assert time.monotonic() - started < 5
    assert "carol: 0 of 2 VMs" in html and "dave: 0 of 9 VMs" in html and "(their own quota applies)" in html


# --- an owned VM grows only within its owner's quota ------------------------------------------------------------

def _max_vcpus(host: Host, vm: str) -> int:
    flags = libvirt.VIR_DOMAIN_VCPU_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM
    return int(services.call(host, lambda conn: conn.lookupByUUIDString(vm).vcpusFlags(flags)))


def _owner_of_db01(test_host: Host, user: Any) -> tuple[OwnedVM, Client]:
    """`user` owns db-01 (made through self-service: 2 vCPUs, 1 GiB memory, 1 GiB disk) and is logged in."""
    owned = quotas.confirm(quotas.reserve(user, test_host, "db-01", vcpus=2, memory_mib=1024, disk_bytes=GIB),
                           DB_01_UUID)
    client = Client()
    client.force_login(user)
    return owned, client


def _resize(client: Client, max_vcpus: int, max_memory_mib: int) -> Any:
    return client.post(f"/instances/testhost/{DB_01_UUID}/resize/", {
        "vcpus": "1", "max_vcpus": str(max_vcpus), "memory_mib": "1024", "max_memory_mib": str(max_memory_mib)})


def test_an_owner_resizes_and_adds_disks_only_within_the_quota(test_host: Host) -> None:
    """The owner holds the change grant, so without this check a resize or a new disk would bypass the quota."""
    carol = _user()
    _quota(test_host, user=carol, vcpus=4, memory=4096, disk=2)
    owned, client = _owner_of_db01(test_host, carol)
    before = _max_vcpus(test_host, DB_01_UUID)
    over = _resize(client, 6, 1024)
    assert over.status_code == 200 and "2 of 4 vCPUs left, 4 asked" in over.content.decode()
    assert _max_vcpus(test_host, DB_01_UUID) == before, "libvirt was not asked"
    owned.refresh_from_db()
    assert (owned.vcpus, owned.memory_mib) == (2, 1024)
    within = _resize(client, 4, 2048)
    assert within.status_code == 302
    owned.refresh_from_db()
    assert (owned.vcpus, owned.memory_mib) == (4, 2048) and _max_vcpus(test_host, DB_01_UUID) == 4
    # A new 2 GiB disk in a pool opened to users: 1 of 2 GiB left. Nothing is made.
    SharedResource.objects.create(host=test_host, kind=SharedKind.POOL, name="images")
    disk = client.post(f"/instances/testhost/{DB_01_UUID}/disks/attach/",
                       {"source": "new", "pool": "images", "size": "2G", "format": "qcow2", "bus": "virtio",
                        "cache": "default"})
    assert "Over quota: 1 of 2 GiB disk left, 2 GiB asked." in disk.content.decode()
    owned.refresh_from_db()
    assert owned.disk_bytes == GIB
    volumes = services.call(test_host, lambda conn: conn.storagePoolLookupByName("images").listVolumes())
    assert not [v for v in volumes if v.startswith("db-01")]


def test_an_owner_on_a_quota_of_flavors_only_resizes_to_its_flavors_only(test_host: Host) -> None:
    """custom_sizes off: the create form offers the quota's flavors only, and a resize keeps to them too."""
    carol = _user()
    quota = _quota(test_host, user=carol, vcpus=4, memory=4096)
    quota.custom_sizes = False
    quota.save()
    quota.flavors.add(Flavor.objects.create(name="big", vcpus=4, memory_mib=2048, disk_gib=10))
    _owned, client = _owner_of_db01(test_host, carol)
    before = _max_vcpus(test_host, DB_01_UUID)
    odd = _resize(client, 3, 1536)
    assert odd.status_code == 200 and "Your quota allows its flavors only" in odd.content.decode()
    assert _max_vcpus(test_host, DB_01_UUID) == before, "libvirt was not asked"
    flavor = _resize(client, 4, 2048)
    assert flavor.status_code == 302 and _max_vcpus(test_host, DB_01_UUID) == 4
    quota.custom_sizes = True
    quota.save()
    own = _resize(client, 3, 1536)
    assert own.status_code == 302 and _max_vcpus(test_host, DB_01_UUID) == 3


def test_a_user_with_a_quota_is_offered_self_service_on_their_page(test_host: Host) -> None:
    carol, dave = _user(), _user("dave")
    _quota(test_host, user=carol)
    for who, offered in ((carol, True), (dave, False)):
        client = Client()
        client.force_login(who)
        html = client.get("/").content.decode()
        assert ('id="create-own"' in html) is offered
        assert ("2 of 2 VMs" in html) is offered
