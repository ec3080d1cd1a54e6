"""The create-VM form and the flavor form.

Every choice comes from the chosen host's HostOffer (virt/capabilities.py), so a value the
host does not offer (unknown pool, network, machine, firmware) is a field error, and the
host's own limits (memory, vCPUs, pool free space, existing names) are checked before
libvirt is asked to do anything. Whether another VM already uses a chosen existing volume
is the host's to say: the view asks it (virt.sharing) and adds the field error.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django import forms

from instances.models import MAX_DISK_GIB, Flavor
from virt.capabilities import BIOS, CPU_DEFAULT, UEFI, HostOffer
from virt.create import DISK_FORMATS, MIB, MIN_MEMORY_MIB, NAME_RE, NIC, NIC_MODELS, NewVM, NewVolume, PoolVolume

NIC_SLOTS = 3
NEW_DISK, EXISTING_DISK = "new", "existing"
FIRMWARE_LABELS = {BIOS: "BIOS", UEFI: "UEFI"}
CPU_MODE_LABELS = {"host-passthrough": "host-passthrough (fastest, not migratable)",
                   "host-model": "host-model (migratable between similar hosts)",
                   "maximum": "maximum", "default": "hypervisor default"}


def _pool_volume(value: str) -> PoolVolume:
    pool, _, volume = value.partition("/")  # pool names cannot contain '/'
    return PoolVolume(pool, volume)


def _mib(size_gib: Decimal) -> int:
    return math.ceil(size_gib * 1024)


class CreateVMForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Letters, digits, '.', '-' and '_'.")
    vcpus = forms.IntegerField(label="vCPUs", min_value=1)  # bounds per host: see __init__
    memory_mib = forms.IntegerField(label="Memory (MiB)", min_value=MIN_MEMORY_MIB)
    firmware = forms.ChoiceField()
    machine = forms.ChoiceField(required=False)
    cpu_mode = forms.ChoiceField(label="CPU mode")
    disk_source = forms.ChoiceField(label="Boot disk", widget=forms.RadioSelect,
                                    choices=[(NEW_DISK, "a new volume"), (EXISTING_DISK, "an existing volume")])
    disk_pool = forms.ChoiceField(label="Pool for the new volume", required=False)
    disk_size_gib = forms.DecimalField(label="Size of the new volume (GiB)", required=False, min_value=Decimal("0.01"),
                                       max_value=MAX_DISK_GIB, max_digits=10, decimal_places=2)
    disk_format = forms.ChoiceField(label="Format of the new volume", choices=[(f, f) for f in DISK_FORMATS])
    disk_allocate = forms.BooleanField(
        label="Allocate the whole disk now", required=False,
        help_text="Writes the new volume in full now (no surprise when the pool fills up later); a large one "
                  "takes a while, so the VM is then created by a job whose page shows the progress.")
    existing_volume = forms.ChoiceField(
        label="Existing volume", required=False,
        help_text="Not one another VM uses: a writable disk is never shared (ISO images on the CD-ROM may be).")
    iso = forms.ChoiceField(label="ISO image on a CD-ROM", required=False)
    start = forms.BooleanField(label="Start it once created", required=False)

    def __init__(self, offer: HostOffer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offer = offer
        # The host's limits become the fields' own bounds (validators and the max attribute).
        self.fields["vcpus"] = forms.IntegerField(label="vCPUs", min_value=1, max_value=offer.max_vcpus)
        self.fields["memory_mib"] = forms.IntegerField(
            label="Memory (MiB)", min_value=MIN_MEMORY_MIB, max_value=offer.memory_mib,
            help_text=f"This host has {offer.memory_mib} MiB.")
        self._choices("firmware", [(f, FIRMWARE_LABELS.get(f, f)) for f in offer.firmwares])
        self._choices("machine", [("", "hypervisor default"), *((m, m) for m in offer.machines)])
        self._choices("cpu_mode", [(m, CPU_MODE_LABELS.get(m, m)) for m in offer.cpu_modes])
        self._choices("disk_pool", [(p.name, f"{p.name} ({p.available_bytes // MIB // 1024} GiB free)")
                                    for p in offer.active_pools])
        self._choices("existing_volume", [("", "-"), *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.volumes())])
        self._choices("iso", [("", "none"), *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.isos())])
        sources = [("", "none")] + [(f"network:{n}", f"network {n}") for n in offer.networks] \
            + [(f"bridge:{b}", f"host bridge {b}") for b in offer.bridges]
        for slot in range(1, NIC_SLOTS + 1):
            self.fields[f"nic{slot}_source"] = forms.ChoiceField(
                label=f"Network interface {slot}", choices=sources, required=False,
                initial=sources[1][0] if slot == 1 and len(sources) > 1 else "")
            self.fields[f"nic{slot}_model"] = forms.ChoiceField(
                label=f"Model of interface {slot}", choices=[(m, m) for m in NIC_MODELS], initial="virtio")
        self.initial.setdefault("disk_source", NEW_DISK)
        self.initial.setdefault("disk_format", "qcow2")
        # The hypervisor's default model boots everywhere and migrates; host-passthrough is a choice
        # (it fails on some nested hosts: "failed to set MSR 0x10a").
        self.initial.setdefault("cpu_mode", CPU_DEFAULT if CPU_DEFAULT in offer.cpu_modes else offer.cpu_modes[0])

    def _choices(self, name: str, choices: list[tuple[str, str]]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        """Field groups for the template, in page order."""
        groups = [
            ("Machine", ["name", "vcpus", "memory_mib", "firmware", "machine", "cpu_mode"]),
            ("Boot disk", ["disk_source", "disk_pool", "disk_size_gib", "disk_format", "disk_allocate",
                           "existing_volume", "iso"]),
            ("Network", [f"nic{s}_{part}" for s in range(1, NIC_SLOTS + 1) for part in ("source", "model")]),
            ("Start", ["start"]),
        ]
        return [(title, [self[name] for name in names]) for title, names in groups]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not NAME_RE.match(name):
            raise forms.ValidationError("Use letters, digits, '.', '-' and '_' (starting with a letter or digit).")
        if name in self.offer.domain_names:
            raise forms.ValidationError("A VM with this name already exists on this host.")
        return name

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if data.get("disk_source") == NEW_DISK:
            pool = self.offer.pool(data.get("disk_pool") or "")
            size = data.get("disk_size_gib")
            if pool is None:
                self.add_error("disk_pool", "Choose a pool for the new volume.")
            if size is None and "disk_size_gib" not in self.errors:
                self.add_error("disk_size_gib", "Give the size of the new volume.")
            if pool is not None and size is not None and _mib(size) * MIB > pool.available_bytes:
                self.add_error("disk_size_gib", f"Pool {pool.name} has only "
                                                f"{pool.available_bytes / MIB / 1024:.2f} GiB free.")
        elif data.get("disk_source") == EXISTING_DISK and not data.get("existing_volume"):
            self.add_error("existing_volume", "Choose the volume to boot from.")
        elif data.get("disk_source") == EXISTING_DISK and data.get("existing_volume") == data.get("iso"):
            self.add_error("existing_volume", "The boot disk cannot be the CD-ROM's ISO image as well.")
        return data

    def allocates(self) -> bool:
        """Whether the new VM's disk is written in full up front (then it is created by a job)."""
        return self.cleaned_data.get("disk_source") == NEW_DISK and bool(self.cleaned_data.get("disk_allocate"))

    def nics(self) -> tuple[NIC, ...]:
        chosen = []
        for slot in range(1, NIC_SLOTS + 1):
            kind, _, name = (self.cleaned_data.get(f"nic{slot}_source") or "").partition(":")
            model = self.cleaned_data.get(f"nic{slot}_model") or "virtio"
            if kind == "network":
                chosen.append(NIC(network=name, model=model))
            elif kind == "bridge":
                chosen.append(NIC(bridge=name, model=model))
        return tuple(chosen)

    def to_spec(self) -> NewVM:
        data = self.cleaned_data
        disk: NewVolume | PoolVolume
        if data["disk_source"] == NEW_DISK:
            disk = NewVolume(data["disk_pool"], _mib(data["disk_size_gib"]), data["disk_format"],
                             allocate=bool(data.get("disk_allocate")))
        else:
            disk = _pool_volume(data["existing_volume"])
        return NewVM(
            name=data["name"], vcpus=data["vcpus"], memory_mib=data["memory_mib"], disk=disk,
            firmware=data["firmware"], machine=data.get("machine") or "", cpu_mode=data["cpu_mode"],
            iso=_pool_volume(data["iso"]) if data.get("iso") else None, nics=self.nics(),
            domain_type=self.offer.domain_type, arch=self.offer.arch,
        )


class FlavorForm(forms.ModelForm[Flavor]):
    class Meta:
        model = Flavor
        fields = ["name", "vcpus", "memory_mib", "disk_gib", "description"]
