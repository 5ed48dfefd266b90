"""Make the collection importable as ansible_collections.pgfleet.core in every test."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout is its own pgfleet.core: collections/ansible_collections/pgfleet/core links back.
COLLECTIONS = os.path.join(ROOT, "collections")
if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "pgfleet", "core", "plugins")):
    raise RuntimeError("collections/ansible_collections/pgfleet/core must link to the checkout (git keeps it as a symlink)")
sys.path.insert(0, COLLECTIONS)
