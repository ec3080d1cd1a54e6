"""What the panel keeps in a VM's own definition about the cloud image it was made from.

One element under the domain's <metadata>, in the panel's namespace:

    <metadata><webkvm:image xmlns:webkvm="https://webkvm.invalid/xmlns/image/1"
        name="debian-12" user="debian" seed-pool="images" seed-volume="web-1-seed.iso"/></metadata>

It travels with the VM (migration, XML history) and needs no row in the panel's database: the VM page reads the
login (`ssh USER@IP`), the deletion reads which volume is the seed. Every value is an attribute set by lxml
(escaped), never formatted into markup.
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt
from lxml import etree

from virt.xml.parser import XMLInputError, parse_xml

NAMESPACE = "https://webkvm.invalid/xmlns/image/1"
PREFIX = "webkvm"
TAG = f"{{{NAMESPACE}}}image"


@dataclass(frozen=True)
class ImageMeta:
    image: str = ""  # the image's name, for display
    user: str = ""  # the login cloud-init made
    seed_pool: str = ""
    seed_volume: str = ""

    def element(self) -> etree._Element:
        node = etree.Element(TAG, nsmap={PREFIX: NAMESPACE})
        for name, value in (("name", self.image), ("user", self.user), ("seed-pool", self.seed_pool),
                            ("seed-volume", self.seed_volume)):
            if value:
                node.set(name, value)
        return node


def _from_element(node: etree._Element) -> ImageMeta:
    return ImageMeta(node.get("name", ""), node.get("user", ""), node.get("seed-pool", ""),
                     node.get("seed-volume", ""))


def add_to(domain: etree._Element, meta: ImageMeta) -> None:
    """Add the element to a <domain> being built (its <metadata> made if missing)."""
    holder = domain.find("metadata")
    if holder is None:
        holder = etree.SubElement(domain, "metadata")
    holder.append(meta.element())


def from_domain(domain: etree._Element) -> ImageMeta | None:
    """The panel's image element of a parsed <domain>; None for a VM not made from an image."""
    holder = domain.find("metadata")
    node = holder.find(TAG) if holder is not None else None
    return _from_element(node) if node is not None else None


def of_domain(dom: libvirt.virDomain) -> ImageMeta | None:
    """The same, asked of libvirt for this one element (no whole XMLDesc)."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_SUPPORT):
            return None
        raise
    try:
        node = parse_xml(str(text))
    except XMLInputError:
        return None
    return _from_element(node) if etree.QName(node).localname == "image" else None
