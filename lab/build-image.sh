#!/usr/bin/env bash
# Builds the lab's Debian systemd image with debootstrap (no registry is needed) and
# imports it into podman. Usage: build-image.sh [trixie|bookworm] (Debian 13 or 12; default trixie). The image is a bare host: PostgreSQL and the rest are installed
# by the roles, as on a real fleet. Rebuilt only when this recipe changes.
set -euo pipefail

release=${1:-${PGFLEET_LAB_RELEASE:-trixie}}
case "$release" in
  bookworm|trixie) ;;
  *) echo "pgfleet: unsupported Debian release '$release' (bookworm or trixie)" >&2; exit 2 ;;
esac
image=localhost/pgfleet-lab:$release
pyc_cache=$(dirname "$0")/pyc_cache.py
recipe=$( (cat "$0" "$pyc_cache"; echo "$release") | sha256sum | cut -c1-16)  # the content, not the path it was called by

if [ "$(podman image inspect --format '{{ index .Labels "pgfleet.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi

# The Debian mirror this host's apt already uses (deb822 or one-line format).
mirror=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security

rootfs=$(mktemp -d /var/tmp/pgfleet-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "pgfleet: building $image from $mirror (about a minute)"
debootstrap --variant=minbase \
  --include=python3,python3-apt,systemd,systemd-sysv,dbus,iproute2,procps,sudo,ca-certificates,gnupg,acl,locales \
  "$release" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; echo "pgfleet: debootstrap failed (log above)" >&2; exit 1; }
rm -f "$rootfs.log"

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $release main
deb $mirror $release-updates main
deb $security $release-security main
SOURCES
# A container has no consoles or kernel modules to manage; these units only fail there.
for unit in getty.target console-getty.service systemd-modules-load.service \
            systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo "en_US.UTF-8 UTF-8" >"$rootfs/etc/locale.gen"
chroot "$rootfs" locale-gen >/dev/null
echo 'LANG=C.UTF-8' >"$rootfs/etc/default/locale"
# Python keeps the bytecode of Ansible's zipped module payloads (lab/pyc_cache.py says why).
site=$rootfs/usr/local/lib/python$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')/dist-packages
mkdir -p "$site"
install -m 0644 "$pyc_cache" "$site/pgfleet_pyc_cache.py"
echo "import pgfleet_pyc_cache" >"$site/pgfleet_pyc_cache.pth"
install -d -m 1777 "$rootfs/var/cache/pgfleet-pyc"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# Empty package lists must look stale, or apt's cache_valid_time would trust them.
touch -d '2000-01-01' "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | podman import --quiet \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL pgfleet.recipe=$recipe" - "$image" >/dev/null
echo "pgfleet: image $image ready"
