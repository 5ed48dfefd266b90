"""Make the collection importable as ansible_collections.pgfleet.core in every test."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `make venv` links this checkout in as .lab/collections/ansible_collections/pgfleet/core.
COLLECTIONS = os.path.join(ROOT, ".lab", "collections")
if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "pgfleet", "core")):
    raise RuntimeError("run the tests through make (make unit / make integration): the collection link is missing")
sys.path.insert(0, COLLECTIONS)
