"""<secret> XML: libvirt secrets, e.g. the Ceph key an RBD pool logs in with."""

from __future__ import annotations

from virt.xml.base import XMLObject
from virt.xml.codecs import YES_NO
from virt.xml.fields import Attr, Text


class Secret(XMLObject):
    tag = "secret"
    ephemeral = Attr("./@ephemeral", YES_NO)  # yes: kept in memory only
    private = Attr("./@private", YES_NO)  # yes: the value can never be read back
    uuid = Text("./uuid")
    description = Text("./description")
    usage_type = Attr("./usage/@type")  # ceph, iscsi, volume, tls
    usage_name = Text("./usage/name")  # ceph
    usage_target = Text("./usage/target")  # iscsi
