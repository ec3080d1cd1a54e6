"""The quota form (admin pages and API alike): for one user or one group, limits and the allowed choices."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.models import Host
from instances.models import Flavor, Quota
from instances.quotas import NETWORK_KINDS
from webkvm.models import SharedKind, SharedResource


class QuotaForm(forms.ModelForm[Quota]):
    """User and group by name, hosts and flavors by name, images and opened pools/networks by id (the API's
    keys too). Exactly one of user and group; the images, pools and networks must be on the chosen hosts."""

    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False, to_field_name="username",
                                  label=gettext_lazy("User"),
                                  error_messages={
                                      "unique": gettext_lazy("This user has a quota already: edit that one.")},
                                  help_text=gettext_lazy("The user this quota is for (or choose a group)."))
    group = forms.ModelChoiceField(queryset=Group.objects.all(), required=False, to_field_name="name",
                                   label=gettext_lazy("Group"),
                                   error_messages={
                                       "unique": gettext_lazy("This group has a quota already: edit that one.")},
                                   help_text=gettext_lazy("A group: each member may use all of it (their own quota "
                                                          "wins)."))
    hosts = forms.ModelMultipleChoiceField(queryset=Host.objects.all(), required=False, to_field_name="name",
                                           label=gettext_lazy("Hosts"),
                                           help_text=gettext_lazy("Hosts their VMs may be made on."))
    flavors = forms.ModelMultipleChoiceField(queryset=Flavor.objects.all(), required=False, to_field_name="name",
                                             label=gettext_lazy("Flavors"),
                                             help_text=gettext_lazy("Flavors they may choose."))

    class Meta:
        model = Quota
        fields = ["user", "group", "max_vms", "max_vcpus", "max_memory_mib", "max_disk_gib", "hosts", "images",
                  "flavors", "custom_sizes", "shared"]
        labels = {"max_vms": gettext_lazy("VMs"), "max_vcpus": gettext_lazy("vCPUs in all"),
                  "max_memory_mib": gettext_lazy("Memory in all (MiB)"),
                  "max_disk_gib": gettext_lazy("Disk in all (GiB)"), "images": gettext_lazy("Images"),
                  "shared": gettext_lazy("Pools and networks")}
        help_texts = {"max_vms": gettext_lazy("0 allows none."),
                      "shared": gettext_lazy("Of what admins opened to users: the pools and networks they may use.")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Administrators may do everything already: quotas are for the others.
        user, shared = self.fields["user"], self.fields["shared"]
        assert isinstance(user, forms.ModelChoiceField) and isinstance(shared, forms.ModelMultipleChoiceField)
        user.queryset = get_user_model().objects.filter(is_superuser=False).order_by("username")
        shared.queryset = SharedResource.objects.filter(
            kind__in=[SharedKind.POOL, *NETWORK_KINDS]).select_related("host")
        if self.instance.pk is not None:  # the initial of a to_field_name field is its key, not the row's pk
            self.initial["user"] = self.instance.user.get_username() if self.instance.user else None
            self.initial["group"] = self.instance.group.name if self.instance.group else None
            self.initial["hosts"] = [h.name for h in self.instance.hosts.all()]
            self.initial["flavors"] = [f.name for f in self.instance.flavors.all()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        user, group = data.get("user"), data.get("group")
        if user is not None and group is not None:
            self.add_error("group", _("Choose a user or a group, not both."))
        elif user is None and group is None and "user" not in self.errors and "group" not in self.errors:
            self.add_error("user", _("Choose the user (or the group) this quota is for."))
        hosts = set(data.get("hosts") or [])
        for field in ("images", "shared"):
            elsewhere = sorted(str(row) for row in data.get(field) or [] if row.host not in hosts)
            if elsewhere:
                self.add_error(field, _("On a host this quota does not allow: {names}. Allow the host too, or "
                                        "leave these out.").format(names=", ".join(elsewhere)))
        return data
