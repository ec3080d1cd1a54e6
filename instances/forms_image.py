"""The form of a VM made from a cloud image: which image, how big, where, and what cloud-init sets up.

Every choice comes from what the view hands it: the images (all of the host's for admins, the quota's for a
user), the flavors, whether sizes of one's own are offered besides them (`custom_sizes`: not for a user whose
quotas all list flavors only), and the host's offer (narrowed to a user's allowed pools and networks). A value
outside them is a field error, as is a disk smaller than the image. The cloud-init fields are checked by
virt/cloudinit.py, whose FieldProblem names the field here: hostname, user, ssh_keys, password, user_data,
address, gateway, dns. The password never leaves the request in clear: clean() replaces it by its SHA-512
crypt hash (`password_hash`), and the field never renders its value again.

User-data is offered to everybody who may use the form: it only acts inside the new guest, which is the
creator's (they get root in it through sudo anyway), and check_user_data caps its size and nesting, refuses
YAML aliases and the keys the panel sets itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from instances.forms_create import CUSTOM, VIRT_LABELS, NamesSelect, SizeChoice, _gib, with_data
from instances.models import Flavor
from virt import cloudinit, names
from virt.capabilities import CPU_DEFAULT, HostOffer
from virt.create import MIB, MIN_MEMORY_MIB, NIC, PoolVolume
from virt.devices import FieldProblem
from virt.image_create import ImageVM
from virt.storage_rules import parse_size
from virt.xml.codecs import iec
from webkvm.i18n import said

COPY, LINKED = "copy", "linked"
DHCP, STATIC = "dhcp", "static"
CLOUD_INIT_FIELDS = ("hostname", "user", "ssh_keys", "password", "user_data", "network_mode", "address",
                     "gateway", "dns")


class ImageCreateForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=63,
                           help_text=gettext_lazy("Letters, digits, '.', '-' and '_'."))
    image = forms.ChoiceField(label=gettext_lazy("Image"), widget=NamesSelect)
    size = forms.ChoiceField(label=gettext_lazy("Size"), widget=SizeChoice)
    vcpus = forms.IntegerField(label=gettext_lazy("vCPUs"), min_value=1, required=False)
    memory = forms.CharField(label=gettext_lazy("Memory"), max_length=20, required=False,
                             help_text=gettext_lazy("Such as 2G or 512M."))
    disk_size = forms.CharField(label=gettext_lazy("Disk"), max_length=20, required=False,
                                help_text=gettext_lazy("Such as 20G; at least the image's size (empty: the flavor's "
                                                       "disk, or the image's minimum). The guest grows its file "
                                                       "system to fill it."))
    disk_pool = forms.ChoiceField(label=gettext_lazy("Pool for the disk"))
    disk_kind = forms.ChoiceField(
        label=gettext_lazy("Disk"), widget=forms.RadioSelect, initial=COPY,
        choices=[(COPY, gettext_lazy("a full copy of the image")),
                 (LINKED, gettext_lazy("a linked clone (instant; the image stays its backing file; only in the "
                                       "image's pool, when its library allows it)"))])
    network = forms.ChoiceField(label=gettext_lazy("Network"), required=False)
    virt_type = forms.ChoiceField(label=gettext_lazy("Virtualization"), widget=forms.RadioSelect, required=False,
                                  help_text=with_data(gettext_noop("Choose full emulation where KVM cannot boot the "
                                                                   "image (it stops at {message})."),
                                                      message="'Welcome to GRUB!'"))
    # cloud-init
    hostname = forms.CharField(label=gettext_lazy("Host name"), max_length=253, required=False,
                               help_text=gettext_lazy("Empty: the VM's name."))
    user = forms.CharField(label=gettext_lazy("User name"), max_length=32, required=False,
                           help_text=with_data(gettext_noop("The login {cloud_init} creates (with {sudo}). Empty: "
                                                            "the image's default user."),
                                               cloud_init="cloud-init", sudo="sudo"))
    ssh_keys = forms.CharField(label=gettext_lazy("SSH public keys"), required=False,
                               widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
                               help_text=with_data(gettext_noop("One {openssh} public key per line ({example})."),
                                                   openssh="OpenSSH", example="ssh-ed25519 AAAA... you@laptop"))
    password = forms.CharField(label=gettext_lazy("Password"), required=False, max_length=cloudinit.PASSWORD_MAX,
                               strip=False, widget=forms.PasswordInput(render_value=False),
                               help_text=gettext_lazy("Optional. Stored only as a hash in the seed; never shown "
                                                      "again."))
    user_data = forms.CharField(label=gettext_lazy("Extra user-data"), required=False,
                                widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
                                help_text=with_data(gettext_noop("Optional {cloud_config} YAML ({keys}...), at most "
                                                                 "{size}."),
                                                    cloud_config="#cloud-config", keys="packages, runcmd",
                                                    size=iec(cloudinit.USER_DATA_MAX)))
    network_mode = forms.ChoiceField(label=gettext_lazy("Address"), widget=forms.RadioSelect, initial=DHCP,
                                     choices=[(DHCP, "DHCP"), (STATIC, gettext_lazy("a fixed address"))])
    address = forms.CharField(label=gettext_lazy("Address/prefix"), max_length=64, required=False,
                              help_text=gettext_lazy("Such as 192.0.2.10/24."))
    gateway = forms.CharField(label=gettext_lazy("Gateway"), max_length=64, required=False)
    dns = forms.CharField(label=gettext_lazy("DNS servers"), max_length=200, required=False,
                          help_text=gettext_lazy("Up to 3, by address."))

    def __init__(self, offer: HostOffer, data: Any = None, *, images: Iterable[Any], flavors: Iterable[Flavor] = (),
                 custom_sizes: bool = True, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.offer = offer
        self.images = {str(image.pk): image for image in images}
        self.flavors = {str(f.pk): f for f in flavors}
        self.custom_sizes = custom_sizes
        self._choices("image", [(pk, _image_label(image)) for pk, image in self.images.items()]
                      or [("", _("no image: an admin imports them under Storage"))])
        size_widget = self.fields["size"].widget
        assert isinstance(size_widget, SizeChoice)
        size_widget.sizes = {f"flavor:{pk}": (f.vcpus, _gib(f.memory_mib), f"{f.disk_gib}G")
                             for pk, f in self.flavors.items()}
        flavor_choices = [(f"flavor:{pk}", _("flavor {flavor}").format(flavor=f.label))
                          for pk, f in self.flavors.items()]
        if custom_sizes:
            self._choices("size", [*flavor_choices, (CUSTOM, _("custom: the sizes below"))])
            self.fields["vcpus"].widget.attrs["max"] = offer.max_vcpus
            self.fields["memory"].help_text = _("Such as 2G or 512M; this host has {size}.").format(
                size=iec(offer.memory_mib * MIB))
        else:  # a quota that allows its flavors only: no sizes of one's own to type (nor to post)
            self._choices("size", flavor_choices or [("", _("no flavor your quota allows"))])
            self.fields["size"].error_messages["invalid_choice"] = _(
                "Your quota allows its flavors only: choose one of them.")
            del self.fields["vcpus"], self.fields["memory"]
        self._choices("disk_pool", [(p.name, _("{pool} ({size} free)").format(pool=p.name, size=iec(p.available_bytes)))
                                    for p in offer.active_pools] or [("", _("no pool you may use"))])
        self._choices("network", [("", _("none")),
                                  *((f"network:{n}", _("network {name}").format(name=n)) for n in offer.networks),
                                  *((f"bridge:{b}", _("host bridge {name}").format(name=b)) for b in offer.bridges)])
        self._choices("virt_type", [(t, VIRT_LABELS.get(t, t)) for t in offer.domain_types or (offer.domain_type,)])
        first_network = self.fields["network"].choices[1][0] if len(self.fields["network"].choices) > 1 else ""  # type: ignore[attr-defined]
        first_size = f"flavor:{next(iter(self.flavors))}" if self.flavors else CUSTOM if custom_sizes else ""
        for name, value in (("size", first_size),
                            ("virt_type", offer.domain_type), ("network", first_network), ("vcpus", 1),
                            ("memory", "1G"), ("disk_kind", COPY), ("network_mode", DHCP)):
            self.initial.setdefault(name, value)
        self.password_hash = ""
        self.seed_keys: tuple[str, ...] = ()

    def _choices(self, name: str, choices: list[Any]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        groups = [(_("What"), ["name", "image"]), (_("Size"), ["size", "vcpus", "memory", "disk_size"]),
                  (_("Where"), ["disk_pool", "disk_kind", "network", "virt_type"]),
                  (format_html('<span translate="no">{}</span>', "cloud-init"),
                   ["hostname", "user", "ssh_keys", "password", "user_data"]),
                  (_("Network settings in the guest"), ["network_mode", "address", "gateway", "dns"])]
        return [(title, [self[name] for name in group if name in self.fields]) for title, group in groups]

    # ---- checks -------------------------------------------------------------------------------------

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not names.NAME_RE.match(name):
            raise forms.ValidationError(names.RULE)
        if name in self.offer.domain_names:
            raise forms.ValidationError(_("A VM with this name already exists on this host."))
        return name

    def chosen_image(self) -> Any:
        return self.images[self.cleaned_data["image"]]

    def _problem(self, exc: FieldProblem) -> None:
        self.add_error(exc.field if exc.field in self.fields else None, said(exc))

    def _sizes(self, data: dict[str, Any]) -> tuple[int | None, int | None, int | None, str]:
        """vCPUs, memory MiB and the flavor's disk bytes (None: not given), and the field their errors belong to."""
        size = data.get("size") or CUSTOM
        if size.startswith("flavor:"):
            flavor = self.flavors[size.removeprefix("flavor:")]
            return flavor.vcpus, flavor.memory_mib, flavor.disk_gib << 30, "size"
        if data.get("vcpus") is None and "vcpus" not in self.errors:
            self.add_error("vcpus", _("Give the number of vCPUs."))
        memory = None
        try:
            memory = parse_size((data.get("memory") or "").strip()) // MIB
        except ValueError:
            self.add_error("memory", _("Give the memory such as 2G or 512M, at most {size}.").format(
                size=iec(self.offer.memory_mib * MIB)))
        return data.get("vcpus"), memory, None, ""

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        offer = self.offer
        if "size" in data:
            vcpus, memory, flavor_disk, where = self._sizes(data)
            if vcpus is not None and vcpus > offer.max_vcpus:
                self.add_error(where or "vcpus", _("At most {count} vCPUs on this host.").format(count=offer.max_vcpus))
            if memory is not None and not MIN_MEMORY_MIB <= memory <= offer.memory_mib:
                self.add_error(where or "memory", _("Memory: between {least} MiB and {most} (what this host has).")
                               .format(least=MIN_MEMORY_MIB, most=iec(offer.memory_mib * MIB)))
            self.effective = (vcpus, memory)
        else:
            flavor_disk = None
        image = self.images.get(data.get("image") or "")
        if image is not None:
            self._check_disk(data, image, flavor_disk)
            self._check_firmware(image)
        self._check_cloud_init(data, image)
        return data

    def _check_disk(self, data: dict[str, Any], image: Any, flavor_disk: int | None) -> None:
        least = max(int(image.min_disk_bytes), int(image.virtual_bytes))
        disk: int | None = None
        if (data.get("disk_size") or "").strip():
            try:
                disk = parse_size(data["disk_size"].strip())
            except ValueError as exc:
                self.add_error("disk_size", said(exc))
                return
        else:
            disk = max(flavor_disk or 0, least)
        if disk < least:
            self.add_error("disk_size", _("The disk must hold the image {image}: at least {size}.").format(
                image=image.name, size=iec(least)))
            return
        self.disk_bytes = disk
        pool = self.offer.pool(data.get("disk_pool") or "")
        if pool is None:
            return  # the choice field said so
        linked = data.get("disk_kind") == LINKED
        if linked and not image.linked_clones:
            self.add_error("disk_kind", _("The library of {image} makes full copies only (or the image is not "
                                          "qcow2): choose a full copy.").format(image=image.name))
        elif linked and pool.name != image.pool:
            self.add_error("disk_pool", _("A linked clone lives in the image's own pool, {pool}.").format(
                pool=image.pool))
        elif not linked and int(image.virtual_bytes) > pool.available_bytes:
            self.add_error("disk_pool", _("Pool {pool} has only {free} free; the copy of {image} can take {size}.")
                           .format(pool=pool.name, free=iec(pool.available_bytes), image=image.name,
                                   size=iec(int(image.virtual_bytes))))

    def _check_firmware(self, image: Any) -> None:
        if image.firmware not in self.offer.firmwares:
            self.add_error("image", _("{image} boots with {firmware}, which this host does not offer.").format(
                image=image.name, firmware=image.firmware.upper()))

    def _check_cloud_init(self, data: dict[str, Any], image: Any) -> None:
        name = data.get("name") or ""
        try:
            data["hostname"] = cloudinit.check_hostname(data.get("hostname") or name)
        except FieldProblem as exc:
            if not data.get("hostname") and name:
                exc = FieldProblem("hostname", gettext_noop("The VM's name is no host name ({problem}): give one."),
                                   problem=exc)
            self._problem(exc)
        default_user = getattr(image, "default_user", "") if image is not None else ""
        for name_, check in (("user", lambda: cloudinit.check_user(data.get("user") or default_user)),
                             ("ssh_keys", lambda: cloudinit.parse_ssh_keys(data.get("ssh_keys") or "")),
                             ("user_data", lambda: cloudinit.check_user_data(data.get("user_data") or ""))):
            try:
                data[name_] = check()
            except FieldProblem as exc:
                self._problem(exc)
        password = data.pop("password", "") or ""
        if password:
            try:
                self.password_hash = cloudinit.hash_password(password)
            except FieldProblem as exc:
                self._problem(exc)
        if "ssh_keys" not in self.errors and "password" not in self.errors:
            try:
                cloudinit.check_login(data.get("ssh_keys") or (), self.password_hash)
            except FieldProblem as exc:
                self._problem(exc)
        data["static"] = None
        if data.get("network_mode") == STATIC:
            if not data.get("network"):
                self.add_error("network", _("A fixed address needs a network interface."))
            try:
                data["static"] = cloudinit.static_network(data.get("address") or "", data.get("gateway") or "",
                                                          data.get("dns") or "")
            except FieldProblem as exc:
                self._problem(exc)

    # ---- what it makes ---------------------------------------------------------------------------------

    def nics(self, mac: str) -> tuple[NIC, ...]:
        kind, _, name = (self.cleaned_data.get("network") or "").partition(":")
        if kind == "network":
            return (NIC(network=name, mac=mac),)
        if kind == "bridge":
            return (NIC(bridge=name, mac=mac),)
        return ()

    def to_spec(self, *, vm_uuid: str, disk_volume: str, mac: str) -> ImageVM:
        data, image = self.cleaned_data, self.chosen_image()
        vcpus, memory = self.effective
        assert vcpus is not None and memory is not None
        return ImageVM(
            name=data["name"], vcpus=vcpus, memory_mib=memory, image=PoolVolume(image.pool, image.volume),
            image_format=image.format, disk_pool=data["disk_pool"], disk_bytes=self.disk_bytes,
            disk_volume=disk_volume, uuid=vm_uuid, linked=data.get("disk_kind") == LINKED, nics=self.nics(mac),
            firmware=image.firmware, domain_type=data.get("virt_type") or self.offer.domain_type,
            machine=self.offer.default_machine, cpu_mode=CPU_DEFAULT if CPU_DEFAULT in self.offer.cpu_modes
            else self.offer.cpu_modes[0] if self.offer.cpu_modes else CPU_DEFAULT,
            arch=self.offer.arch, user=data["user"], image_name=image.name)

    def seed_spec(self, mac: str) -> cloudinit.SeedSpec:
        data = self.cleaned_data
        return cloudinit.SeedSpec(hostname=data["hostname"], user=data["user"], ssh_keys=data.get("ssh_keys") or (),
                                  password_hash=self.password_hash, user_data=data.get("user_data") or "",
                                  network=data.get("static"), mac=mac if self.nics(mac) else "")


def _image_label(image: Any) -> str:
    os_words = getattr(image, "os_words", "")
    return f"{image.name}{f' ({os_words})' if os_words else ''}, {iec(int(image.virtual_bytes))}"

