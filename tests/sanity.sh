#!/usr/bin/env bash
# ansible-test sanity on the collection as users get it: build the artifact with
# ansible-galaxy, install it into a scratch ansible_collections tree, test it there.
# ansible-test's own pinned linters go into a venv of their own (.lab/sanity-venv), so
# they never disturb the project's pinned toolchain.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.lab/sanity-venv"
core=$(python3 -c 'import ansible; print(ansible.__version__)')
if [ "$("$venv/bin/python" -c 'import ansible; print(ansible.__version__)' 2>/dev/null)" != "$core" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "ansible-core==$core"
fi

# ansible-test fetches a pip bootstrap script from a host this network cannot reach;
# it uses a cached copy when one is present, so give it an equivalent.
pipver=$(grep -hoP "^\s+pip='\K[0-9.]+(?=')" "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py)
cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
mkdir -p "$(dirname "$cache")"
cp "$root/tests/get_pip_offline.py" "$cache"

work=$(mktemp -d /var/tmp/pgfleet-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work" "$root" >/dev/null
ansible-galaxy collection install --force --no-deps -p "$work/collections" "$work"/pgfleet-core-*.tar.gz >/dev/null 2>&1
cd "$work/collections/ansible_collections/pgfleet/core"
PATH="$venv/bin:$PATH" ansible-test sanity --local --requirements --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "$@"
