# What the role would otherwise learn in five round trips: the host's certificate, the CA
# certificate beside it, the public half of the host's key (the key itself stays here) and
# the three files' owners and modes. Anything unreadable is null: the role then does the work.
import grp
import json
import os
import pwd
import sys

directory, name = sys.argv[1], sys.argv[2]
out = {"crt": None, "root": None, "pubkey": None, "files": {}}
for f in (name + ".key", name + ".crt", "root.crt"):
    try:
        st = os.stat(os.path.join(directory, f))
        out["files"][f] = [pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, "%04o" % (st.st_mode & 0o7777)]
    except (OSError, KeyError):
        pass
for key, f in (("crt", name + ".crt"), ("root", "root.crt")):
    try:
        with open(os.path.join(directory, f), encoding="ascii") as fh:
            out[key] = fh.read()
    except (OSError, ValueError):
        pass
try:
    from cryptography.hazmat.primitives import serialization
    with open(os.path.join(directory, name + ".key"), "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    out["pubkey"] = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
except Exception:  # pylint: disable=broad-except  # a missing or bad key: the role makes one
    pass
print(json.dumps(out))
