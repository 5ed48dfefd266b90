#!/usr/bin/env bash
# Installs what the lab fleet and the tests need on a Debian 12 host, and stops with a
# clear message (not a stack trace) when the host cannot run them.
set -euo pipefail

die() { echo "pgfleet: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: the lab starts rootful podman containers and PostgreSQL clusters (try: sudo make lab)"
command -v apt-get >/dev/null || die "apt-get not found: the lab needs a Debian 12 (bookworm) host"
# shellcheck disable=SC1091 # a system file, read for its variables
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || echo "pgfleet: warning: tested on Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}" >&2

# Host packages: podman + runc for the fleet (netavark needs iptables for its bridge
# networks; kube play builds its pods' pause image with catatonit), debootstrap for the image, PostgreSQL 15
# for the integration tests' throwaway clusters (pg_partman for the partition benchmark);
# ansible-test sanity runs the shellcheck package; python3-psycopg2 runs the host-side
# partition runner in its test as on a database host; redis-server for the
# redis_persistence tests and redis-benchmark; pgbouncer for its benchmark and, with
# python3-prometheus-client, -yaml and -bcrypt, the PgBouncer exporter's test; prometheus
# for promtool (checks and unit tests the alert rules); the postgres and node exporters
# for their test.
# Debian's postgresql package would create and start a 'main' cluster; the tests start
# their own, so switch that off first.
# The controller's own Debian release decides the PostgreSQL major version (its postgresql
# metapackage names it), as on the managed hosts.
pgv=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1)
[ -n "$pgv" ] || die "apt cannot find Debian's postgresql package (run apt-get update?)"
packages=(podman runc catatonit debootstrap netavark aardvark-dns iptables gpg python3-venv
          postgresql-common "postgresql-$pgv" "postgresql-client-$pgv" "postgresql-$pgv-partman" python3-psycopg2
          pgbackrest redis-server redis-tools pgbouncer python3-prometheus-client python3-yaml python3-bcrypt
          prometheus prometheus-postgres-exporter prometheus-node-exporter openssl acl git make shellcheck)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pgfleet: installing ${missing[*]}"
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/pgfleet-tests.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: check the host's Debian mirror"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  # The packages start their own services; the tests start theirs on free ports.
  systemctl disable --now redis-server pgbouncer prometheus prometheus-postgres-exporter prometheus-node-exporter >/dev/null 2>&1 || true
fi

# Podman must be able to run a container here (cgroups, namespaces, overlay storage).
podman info >/dev/null 2>&1 || die "podman cannot run on this host: 'podman info' failed ($(podman info 2>&1 | tail -n1))"
