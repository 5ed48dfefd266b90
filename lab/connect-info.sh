#!/usr/bin/env bash
# Prints how to reach the converged lab fleet (the primary, each replica, Redis).
set -euo pipefail
inv=$(ansible-inventory --list)
group() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(d.get(sys.argv[1],{}).get("hosts",[])))' "$1" <<<"$inv"; }
echo
echo "The lab fleet is up. Connect with:"
for h in $(group postgres_primary); do
  echo "  podman exec -it $h sudo -u postgres psql          # primary ($h)"
done
for h in $(group postgres_replicas); do
  echo "  podman exec -it $h sudo -u postgres psql          # read-only replica ($h)"
done
for h in $(group pgbouncer); do
  echo "  podman exec -it -e PGPASSWORD=\"\$(cat .lab/secrets/pg_profile_service_password)\" $h psql \"host=$h port=6432 dbname=profile_db user=profile_service sslmode=verify-full sslrootcert=/etc/pgbouncer/root.crt\"   # via PgBouncer (profile_db_ro: the replicas)"
done
for h in $(group redis); do
  echo "  podman exec -it -e REDISCLI_AUTH=\"\$(cut -d' ' -f1 .lab/secrets/redis_app_password)\" $h redis-cli --user app   # Redis ($h)"
done
echo "Remove it all with: make lab-destroy"
