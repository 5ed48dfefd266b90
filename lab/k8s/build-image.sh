#!/usr/bin/env bash
# Builds k8s_postgres's image (roles/k8s_postgres/files/Containerfile) here with podman, on
# the lab's debootstrapped Debian 13 image (no registry is reachable), with Debian 13's
# PostgreSQL version from postgresql_core's platform map. Rebuilt only when the recipe changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
recipe_file=$root/roles/k8s_postgres/files/Containerfile
version=$(awk -F': *' '/^ *"13":/ {print $2}' "$root/roles/postgresql_core/vars/main.yml")
image=localhost/pgfleet-postgres:$version
recipe=$(cat "$recipe_file" "$0" | sha256sum | cut -c1-16)
if [ "$(podman image inspect --format '{{ index .Labels "pgfleet.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi
bash "$root/lab/build-image.sh" trixie
podman build --quiet --build-arg BASE=localhost/pgfleet-lab:trixie --build-arg PG_VERSION="$version" \
  --label pgfleet.recipe="$recipe" -t "$image" -f "$recipe_file" "$root/roles/k8s_postgres/files" >/dev/null
echo "pgfleet: image $image ready"
