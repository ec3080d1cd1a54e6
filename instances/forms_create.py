"""The guided create-VM form (numbered steps on one page) and the flavor form.

Every choice comes from the chosen host's HostOffer (virt/capabilities.py), so a value the
host does not offer (unknown pool, network, machine, firmware) is a field error, and the
host's own limits (memory, vCPUs, pool free space, existing names) are checked before
libvirt is asked to do anything. Whether another VM already uses a chosen existing volume
is the host's to say: the view asks it (virt.sharing) and adds the field error.

The operating system (libosinfo's database, virt/osinfo.py) decides the devices (virtio where the
guest has the drivers, else SATA and e1000) and, unless a flavor or custom sizes are chosen, the sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django import forms
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from instances.models import Flavor
from virt import names
from virt.capabilities import BIOS, CPU_DEFAULT, UEFI, HostOffer
from virt.create import (
    DISK_BUSES,
    DISK_FORMATS,
    MIB,
    MIN_MEMORY_MIB,
    NIC,
    NIC_MODELS,
    NewVM,
    NewVolume,
    PoolVolume,
)
from virt.osinfo import GENERIC, OTHER, Catalogue, OsEntry
from virt.storage_rules import parse_size
from virt.xml.codecs import iec
from webkvm.i18n import said

NIC_SLOTS = 3
NEW_DISK, EXISTING_DISK, NO_DISK = "new", "existing", "none"
RECOMMENDED, CUSTOM = "recommended", "custom"
FULL_EMULATION = "qemu"
FIRMWARE_LABELS = {BIOS: "BIOS", UEFI: "UEFI"}
CPU_MODE_LABELS = {"host-passthrough": gettext_lazy("host-passthrough (fastest, not migratable)"),
                   "host-model": gettext_lazy("host-model (migratable between similar hosts)"),
                   "maximum": gettext_lazy("maximum"), "default": gettext_lazy("hypervisor default")}
VIRT_LABELS = {"kvm": gettext_lazy("KVM (hardware virtualization, fast)"),
               FULL_EMULATION: gettext_lazy("Full emulation (TCG, slower)"),
               "test": gettext_lazy("libvirt's test driver")}
AS_THE_OS_NEEDS = ""


def _with_data(text: str, **data: str) -> SafeString:
    """A translated sentence whose {placeholders} are data shown as they are (machine names, a message a
    program prints, a command): each in an element marked translate="no"."""
    return format_html(_(text), **{name: format_html('<span translate="no">{}</span>', value)
                                   for name, value in data.items()})


with_data = lazy(_with_data, SafeString)  # evaluated when shown, in the reader's language
GRUB_HINT = with_data(gettext_noop("Choose full emulation if the installer stops at {message}."),
                      message="'Welcome to GRUB!'")


def _pool_volume(value: str) -> PoolVolume:
    pool, _, volume = value.partition("/")  # pool names cannot contain '/'
    return PoolVolume(pool, volume)


def _gib(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


class DataSelect(forms.Select):
    """A list whose choices are mostly data (machine types, volumes, bus and model names): an option that shows
    its value as it is is marked translate="no"; options worded by the panel are translated as usual."""

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int,
                      subindex: int | None = None, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value not in (None, "") and str(label) == str(value):
            option["attrs"]["translate"] = "no"
        return option


class NamesSelect(forms.Select):
    """A list of names (images, with their OS and size): every option but the empty one is translate="no"."""

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int,
                      subindex: int | None = None, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value not in (None, ""):
            option["attrs"]["translate"] = "no"
        return option


class OsSelect(forms.Select):
    """The OS list: each option carries the sizes and devices the page's script pre-fills from."""

    def __init__(self, entries: dict[str, OsEntry]) -> None:
        super().__init__(attrs={"size": "10", "class": "os-list"})
        self.entries = entries

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int,
                      subindex: int | None = None, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(name, value, label, selected, index, subindex, attrs)
        entry = self.entries.get(str(value))
        if entry is not None and str(value) != OTHER:
            option["attrs"]["translate"] = "no"  # libosinfo's names of operating systems
        if entry is not None:
            option["attrs"].update({"data-vcpus": entry.vcpus, "data-memory": entry.memory,
                                    "data-disk": f"{entry.disk_gib}G", "data-bus": entry.disk_bus,
                                    "data-nic": entry.nic_model(), "data-efi": "1" if entry.efi_only else ""})
        return option


class SizeChoice(forms.RadioSelect):
    """The size choices: each flavor carries its sizes for the page's script."""

    sizes: dict[str, tuple[int, str, str]] = {}

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int,
                      subindex: int | None = None, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(name, value, label, selected, index, subindex, attrs)
        if str(value) in self.sizes:
            vcpus, memory, disk = self.sizes[str(value)]
            option["attrs"].update({"data-vcpus": vcpus, "data-memory": memory, "data-disk": disk})
        return option


class CreateVMForm(forms.Form):
    # 1. What
    name = forms.CharField(label=gettext_lazy("Name"), max_length=63,
                           help_text=gettext_lazy("Letters, digits, '.', '-' and '_'."))
    os = forms.ChoiceField(label=gettext_lazy("Operating system"), required=False)
    # 2. Where
    host = forms.ChoiceField(label=gettext_lazy("Host"), required=False,
                             widget=DataSelect)  # empty: the host of the link
    disk_pool = forms.ChoiceField(label=gettext_lazy("Pool for the new disk"), required=False)
    # 3. Size
    size = forms.ChoiceField(label=gettext_lazy("Size"), widget=SizeChoice)
    vcpus = forms.IntegerField(label=gettext_lazy("vCPUs"), min_value=1)  # bounds per host: see __init__
    memory = forms.CharField(label=gettext_lazy("Memory"), max_length=20, required=False,
                             help_text=gettext_lazy("Such as 2G or 512M."))
    disk_size = forms.CharField(label=gettext_lazy("Disk"), max_length=20, required=False,
                                help_text=gettext_lazy("Such as 20G."))
    # 4. Media
    iso = forms.ChoiceField(label=gettext_lazy("Installer ISO (on a read-only CD-ROM)"), required=False,
                            widget=DataSelect)
    disk_source = forms.ChoiceField(
        label=gettext_lazy("Boot disk"), widget=forms.RadioSelect,
        choices=[(NEW_DISK, gettext_lazy("a new, empty disk")), (EXISTING_DISK, gettext_lazy("an existing volume")),
                 (NO_DISK, gettext_lazy("no disk (a live system on the ISO, or boot from the network)"))])
    existing_volume = forms.ChoiceField(
        label=gettext_lazy("Existing volume"), required=False, widget=DataSelect,
        help_text=gettext_lazy("Not one another VM uses: a writable disk is never shared (ISO images are never "
                               "offered here)."))
    # 5. Machine
    machine = forms.ChoiceField(label=gettext_lazy("Machine type"), required=False, widget=DataSelect)
    all_machines = forms.BooleanField(
        label=gettext_lazy("Show every machine type"), required=False,
        help_text=with_data(gettext_noop("Older versions, and special ones that cannot run a general OS "
                                         "({machines})."), machines="isapc, microvm, x-remote"))
    firmware = forms.ChoiceField(label=gettext_lazy("Firmware"))
    # 6. Virtualization
    virt_type = forms.ChoiceField(label=gettext_lazy("Virtualization"), widget=forms.RadioSelect, required=False,
                                  help_text=GRUB_HINT)
    cpu_mode = forms.ChoiceField(label=gettext_lazy("CPU mode"), widget=DataSelect)
    # 7. Start
    start = forms.BooleanField(label=gettext_lazy("Start it once created"), required=False, initial=True)
    # Advanced
    disk_format = forms.ChoiceField(label=gettext_lazy("Format of the new disk"), widget=DataSelect,
                                    choices=[(f, f) for f in DISK_FORMATS])
    disk_allocate = forms.BooleanField(
        label=gettext_lazy("Allocate the whole disk now"), required=False,
        help_text=gettext_lazy("Writes the new volume in full now (no surprise when the pool fills up later); a "
                               "large one takes a while, so the VM is then created by a job whose page shows the "
                               "progress."))
    disk_bus = forms.ChoiceField(label=gettext_lazy("Disk bus"), required=False, widget=DataSelect,
                                 choices=[(AS_THE_OS_NEEDS, gettext_lazy("as the OS needs")),
                                          *((b, b) for b in DISK_BUSES)])

    def __init__(self, offer: HostOffer, *args: Any, catalogue: Catalogue, hosts: Iterable[str] = (),
                 flavors: Iterable[Flavor] = (), today: date | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offer, self.catalogue = offer, catalogue
        self.flavors = {str(f.pk): f for f in flavors}
        offered = catalogue.offered(today or date.today())
        self.os_entries = {e.id: e for e in offered}
        groups: dict[str, list[tuple[str, str]]] = {}
        for entry in offered:
            groups.setdefault(entry.vendor, []).append((entry.id, entry.name))
        self.fields["os"].widget = OsSelect({OTHER: GENERIC, **self.os_entries})
        self._choices("os", [(OTHER, _("Another operating system (devices every installer knows)")),
                             *((vendor, tuple(items)) for vendor, items in groups.items())])
        self._choices("host", [(h, h) for h in hosts])
        # The host's limits become the fields' own bounds (validators and the max attribute).
        self.fields["vcpus"] = forms.IntegerField(label=_("vCPUs"), min_value=1, max_value=offer.max_vcpus,
                                                  required=False)
        self.fields["memory"].help_text = _("Such as 2G or 512M; this host has {size}.").format(
            size=iec(offer.memory_mib * MIB))
        size_widget = self.fields["size"].widget
        assert isinstance(size_widget, SizeChoice)
        size_widget.sizes = {f"flavor:{pk}": (f.vcpus, _gib(f.memory_mib), f"{f.disk_gib}G")
                             for pk, f in self.flavors.items()}
        self._choices("size", [(RECOMMENDED, _("as recommended for the operating system")),
                               *((f"flavor:{pk}", _("flavor {flavor}").format(flavor=f.label))
                                 for pk, f in self.flavors.items()),
                               (CUSTOM, _("custom: the sizes below"))])
        self._choices("firmware", [(f, FIRMWARE_LABELS.get(f, f)) for f in offer.firmwares])
        self._choices("machine", self._machine_choices())
        self._choices("virt_type", [(t, VIRT_LABELS.get(t, t)) for t in offer.domain_types or (offer.domain_type,)])
        self._choices("cpu_mode", [(m, CPU_MODE_LABELS.get(m, m)) for m in offer.cpu_modes])
        self._choices("disk_pool", [(p.name, _("{pool} ({size} free)").format(pool=p.name, size=iec(p.available_bytes)))
                                    for p in offer.active_pools]
                      or [("", _("no active pool: make one under Storage, or choose no disk"))])
        # ISO images are only ever CD-ROMs: never a writable boot disk.
        isos = set(offer.isos())
        self._choices("existing_volume", [("", "-"), *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.volumes()
                                                       if (p, v) not in isos and not v.lower().endswith(".iso"))])
        self._choices("iso", [("", _("none")), *((f"{p}/{v}", f"{p}/{v}") for p, v in offer.isos())])
        sources = [("", _("none"))] + [(f"network:{n}", _("network {name}").format(name=n)) for n in offer.networks] \
            + [(f"bridge:{b}", _("host bridge {name}").format(name=b)) for b in offer.bridges]
        models = [(AS_THE_OS_NEEDS, _("as the OS needs")), *((m, m) for m in NIC_MODELS)]
        for slot in range(1, NIC_SLOTS + 1):
            self.fields[f"nic{slot}_source"] = forms.ChoiceField(
                label=_("Network") if slot == 1 else _("Network interface {slot}").format(slot=slot), choices=sources,
                required=False,
                initial=sources[1][0] if slot == 1 and len(sources) > 1 else "")
            self.fields[f"nic{slot}_model"] = forms.ChoiceField(
                label=_("Model of interface {slot}").format(slot=slot), choices=models, widget=DataSelect,
                required=False, initial=AS_THE_OS_NEEDS)
        for name, value in (("disk_source", NEW_DISK), ("disk_format", "qcow2"), ("size", RECOMMENDED),
                            ("virt_type", offer.domain_type), ("os", OTHER), ("vcpus", GENERIC.vcpus),
                            ("memory", GENERIC.memory), ("disk_size", f"{GENERIC.disk_gib}G")):
            self.initial.setdefault(name, value)
        # The hypervisor's default model boots everywhere and migrates; host-passthrough is a choice
        # (it fails on some nested hosts: "failed to set MSR 0x10a").
        self.initial.setdefault("cpu_mode", CPU_DEFAULT if CPU_DEFAULT in offer.cpu_modes else offer.cpu_modes[0])

    def _choices(self, name: str, choices: list[Any]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def _asked_all_machines(self) -> bool:
        raw = self.data.get("all_machines") if self.is_bound else self.initial.get("all_machines")
        return raw not in (None, "", False, "false", "off")

    def _machine_choices(self) -> list[Any]:
        offer = self.offer
        default = offer.default_machine
        choices: list[Any] = [("", _("the host's default ({machine})").format(machine=default) if default
                               else _("the host's default"))]
        current = [m for m in offer.current_machines if m != default]
        aliases = dict(offer.machine_aliases)
        choices += [(m, _("{machine} (today {alias})").format(machine=m, alias=aliases[m]) if m in aliases else m)
                    for m in current]
        if self._asked_all_machines():
            rest = [m for m in offer.machines if m not in current and m != default]
            if rest:
                choices.append((_("Other versions"), tuple((m, m) for m in rest)))
            if offer.special_machines:
                choices.append((_("Special purpose (cannot run a general OS)"),
                                tuple((m, m) for m in offer.special_machines)))
        return choices

    @property
    def hides_virt_type(self) -> bool:
        return len(self.fields["virt_type"].choices) < 2  # type: ignore[attr-defined]

    def steps(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The numbered steps, in page order (the template numbers them); then "advanced"."""
        groups = [
            (_("What"), ["name", "os"]),
            (_("Where"), ["host", "disk_pool", "nic1_source"]),
            (_("Size"), ["size", "vcpus", "memory", "disk_size"]),
            (_("Media"), ["iso", "disk_source", "existing_volume"]),
            (_("Machine"), ["machine", "all_machines", "firmware"]),
            (_("Virtualization"), ([] if self.hides_virt_type and "virt_type" not in self.errors else ["virt_type"])
             + ["cpu_mode"]),
            (_("Start"), ["start"]),
        ]
        return [(title, [self[name] for name in names]) for title, names in groups]

    def advanced(self) -> list[forms.BoundField]:
        names = ["disk_format", "disk_allocate", "disk_bus", "nic1_model"]
        names += [f"nic{s}_{part}" for s in range(2, NIC_SLOTS + 1) for part in ("source", "model")]
        return [self[name] for name in names]

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [*self.steps(), (_("Advanced"), self.advanced())]

    # ---- checks ---------------------------------------------------------------------------

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not names.NAME_RE.match(name):
            raise forms.ValidationError(names.RULE)
        if name in self.offer.domain_names:
            raise forms.ValidationError(_("A VM with this name already exists on this host."))
        return name

    def chosen_os(self) -> OsEntry:
        os_id = self.cleaned_data.get("os") or OTHER
        return self.os_entries.get(os_id) or self.catalogue.get(os_id) or GENERIC

    def _size(self, field: str, text: str) -> int | None:
        """MiB from '2G', '512M' (the panel's one size rule, virt.storage_rules.parse_size)."""
        try:
            return parse_size(text.strip()) // MIB
        except ValueError as exc:
            self.add_error(field, _("Give the memory such as 2G or 512M, at most {size}.").format(
                size=iec(self.offer.memory_mib * MIB)) if field == "memory" else said(exc))
            return None

    def _sizes(self, data: dict[str, Any]) -> tuple[int | None, int | None, int | None, str]:
        """vCPUs, memory MiB, disk MiB of the chosen size, and the field their errors belong to."""
        size = data.get("size") or RECOMMENDED
        if size == CUSTOM:
            if data.get("vcpus") is None and "vcpus" not in self.errors:
                self.add_error("vcpus", _("Give the number of vCPUs."))
            memory = self._size("memory", data.get("memory") or "") if data.get("memory") else None
            if memory is None and "memory" not in self.errors:
                self.add_error("memory", _("Give the memory, such as 2G."))
            disk = None
            if data.get("disk_source") == NEW_DISK:
                disk = self._size("disk_size", data.get("disk_size") or "") if data.get("disk_size") else None
                if disk is None and "disk_size" not in self.errors:
                    self.add_error("disk_size", _("Give the size of the new disk, such as 20G."))
            return data.get("vcpus"), memory, disk, ""
        if size.startswith("flavor:"):
            flavor = self.flavors[size.removeprefix("flavor:")]
            return flavor.vcpus, flavor.memory_mib, flavor.disk_gib * 1024, "size"
        entry = self.chosen_os()
        return entry.vcpus, entry.memory_mib, entry.disk_gib * 1024, "size"

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if "size" not in data:
            return data
        vcpus, memory, disk, where = self._sizes(data)
        offer = self.offer
        if vcpus is not None and vcpus > offer.max_vcpus:
            self.add_error(where or "vcpus", _("At most {count} vCPUs on this host.").format(count=offer.max_vcpus))
        if memory is not None and not MIN_MEMORY_MIB <= memory <= offer.memory_mib:
            between = {"least": MIN_MEMORY_MIB, "most": iec(offer.memory_mib * MIB)}
            self.add_error(where or "memory", (
                _("Memory: between {least} MiB and {most} (what this host has); choose custom sizes.") if where
                else _("Memory: between {least} MiB and {most} (what this host has).")).format(**between))
        self.effective = (vcpus, memory, disk)
        if data.get("disk_source") == NEW_DISK:
            pool = offer.pool(data.get("disk_pool") or "")
            if pool is None:
                self.add_error("disk_pool", _("Choose a pool for the new disk."))
            if pool is not None and disk is not None and disk * MIB > pool.available_bytes:
                self.add_error(where or "disk_size", _("Pool {pool} has only {size} free.").format(
                    pool=pool.name, size=iec(pool.available_bytes)))
        elif data.get("disk_source") == EXISTING_DISK and not data.get("existing_volume"):
            self.add_error("existing_volume", _("Choose the volume to boot from."))
        virt_type = data.get("virt_type") or offer.domain_type
        if virt_type == FULL_EMULATION and data.get("cpu_mode") == "host-passthrough":
            self.add_error("cpu_mode", _("host-passthrough needs KVM: with full emulation choose another CPU mode."))
        entry = self.chosen_os()
        if entry.efi_only and data.get("firmware") == BIOS:
            efi_only = (_("{os} boots with UEFI only: choose UEFI.") if UEFI in offer.firmwares
                        else _("{os} boots with UEFI only, which this host lacks."))
            self.add_error("firmware", efi_only.format(os=entry.name))
        return data

    def allocates(self) -> bool:
        """Whether the new VM's disk is written in full up front (then it is created by a job)."""
        return self.cleaned_data.get("disk_source") == NEW_DISK and bool(self.cleaned_data.get("disk_allocate"))

    def nics(self, machine: str) -> tuple[NIC, ...]:
        chosen = []
        for slot in range(1, NIC_SLOTS + 1):
            kind, _, name = (self.cleaned_data.get(f"nic{slot}_source") or "").partition(":")
            model = self.cleaned_data.get(f"nic{slot}_model") or self.chosen_os().nic_model(machine)
            if kind == "network":
                chosen.append(NIC(network=name, model=model))
            elif kind == "bridge":
                chosen.append(NIC(bridge=name, model=model))
        return tuple(chosen)

    def to_spec(self) -> NewVM:
        data = self.cleaned_data
        vcpus, memory, disk_mib = self.effective
        assert vcpus is not None and memory is not None
        disk: NewVolume | PoolVolume | None = None
        if data["disk_source"] == NEW_DISK:
            assert disk_mib is not None
            disk = NewVolume(data["disk_pool"], disk_mib, data["disk_format"], allocate=bool(data.get("disk_allocate")))
        elif data["disk_source"] == EXISTING_DISK:
            disk = _pool_volume(data["existing_volume"])
        # The host's default, named: libvirt would write the same, and the CD-ROM's bus depends on it.
        machine = data.get("machine") or self.offer.default_machine
        return NewVM(
            name=data["name"], vcpus=vcpus, memory_mib=memory, disk=disk,
            firmware=data["firmware"], machine=machine, cpu_mode=data["cpu_mode"],
            iso=_pool_volume(data["iso"]) if data.get("iso") else None, nics=self.nics(machine),
            domain_type=data.get("virt_type") or self.offer.domain_type, arch=self.offer.arch,
            disk_bus=data.get("disk_bus") or self.chosen_os().disk_bus,
        )

    def summary(self) -> list[tuple[str, str, str]]:
        """What will be made, from the current values: (key, label, value); the key (English) is what the page's
        script keeps up to date by (static/js/create.js), the label is shown."""
        def value(name: str) -> str:
            raw = self[name].value()
            field = self.fields[name]
            if isinstance(field, forms.ChoiceField):
                choices: list[tuple[Any, Any]] = list(field.choices)  # type: ignore[arg-type]
                for key, label in choices:
                    for k, text in (label if isinstance(label, (tuple, list)) else ((key, label),)):
                        if str(k) == str(raw):
                            return str(text)
            return "" if raw in (None, False) else _("yes") if raw is True else str(raw)

        return [("Name", _("Name"), value("name") or "-"), ("OS", _("OS"), value("os")),
                ("Host", _("Host"), value("host")), ("Size", _("Size"), value("size")),
                ("ISO", _("ISO"), value("iso")), ("Boot disk", _("Boot disk"), value("disk_source")),
                ("Network", _("Network"), value("nic1_source")), ("Machine", _("Machine"), value("machine")),
                ("Virtualization", _("Virtualization"), value("virt_type")),
                ("Start", _("Start"), _("yes") if self["start"].value() else _("no"))]


class FlavorForm(forms.ModelForm[Flavor]):
    class Meta:
        model = Flavor
        fields = ["name", "vcpus", "memory_mib", "disk_gib", "description"]
        labels = {"name": gettext_lazy("Name"), "vcpus": gettext_lazy("vCPUs"),
                  "memory_mib": gettext_lazy("Memory (MiB)"),
                  "disk_gib": gettext_lazy("Disk (GiB)"), "description": gettext_lazy("Description")}
