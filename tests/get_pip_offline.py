"""Stand-in for ansible-test's pip bootstrap script, whose download host is out of reach.

ansible-test runs its cached get-pip script in each fresh sanity venv (which has no pip)
with get-pip's arguments. This does the same job from the standard library's ensurepip
and the package registry: install pip, then the requested packages (e.g. pip==24.2).
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
                      stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args]))
