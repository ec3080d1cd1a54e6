#!/bin/sh
# Installs the Debian packages the panel and its tests need, only when some are missing.
set -eu
PACKAGES="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev qemu-system-x86 qemu-utils
dnsmasq-base iptables iproute2 openssh-server openssh-client sasl2-bin libsasl2-modules chromium chromium-driver
pkg-config gcc python3-venv python3-dev nodejs npm util-linux procps openssl nginx redis-server
postgresql osinfo-db gettext"
# For the tests' installer ISO (tests/installer_iso.py): Debian's own installer, made bootable by grub-mkrescue.
PACKAGES="$PACKAGES debian-installer-12-netboot-amd64 grub-pc-bin grub-common xorriso mtools"
# For the tests' cloud image (tests/cloud_image.py): Debian 12 from Debian's packages by mmdebstrap, its ext4
# filled by mkfs.ext4 -d, GRUB's boot sector and core image from grub-pc-bin, qcow2 by qemu-img.
PACKAGES="$PACKAGES mmdebstrap e2fsprogs"
# A Chinese font, so Chromium draws the zh-Hans pages (tests/browser/test_chinese_screens.py) with real glyphs.
PACKAGES="$PACKAGES fonts-wqy-microhei"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm may come from outside Debian (already on PATH): then the Debian ones are not needed.
if command -v npm >/dev/null 2>&1; then missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' '); fi
if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e python3-venv -e python3-dev | tr '\n' ' ')
fi
missing=$(echo "$missing" | xargs)
if [ -z "$missing" ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "webkvm: missing Debian packages (run as root to install): $missing" >&2; exit 1; fi
echo "Installing Debian packages: $missing"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
# nginx is here for docs/reverse-proxy.md and its test (which runs its own nginx on loopback): do not leave
# Debian's default site answering on port 80 until the admin configures the reverse proxy.
if echo " $missing " | grep -q " nginx "; then
  systemctl disable --now nginx >/dev/null 2>&1 || service nginx stop >/dev/null 2>&1 || true
fi
# The same for Redis (the panel runs a private redis-server on a unix socket in its data dir) and for
# PostgreSQL (an optional database, WEBKVM_DATABASE_URL; the tests run a private cluster of their own).
for service in redis-server postgresql; do
  if echo " $missing " | grep -q " $service "; then
    systemctl disable --now "$service" >/dev/null 2>&1 || service "$service" stop >/dev/null 2>&1 || true
  fi
done
