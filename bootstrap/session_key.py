"""The one-time SSH key of a dsinfra session: no key file to manage.

An ed25519 key made in memory (cryptography; paramiko 3+ reads it but cannot generate
ed25519), once per process. Before each connection its public half is pushed to the instance
with EC2 Instance Connect ``SendSSHPublicKey`` (``cloud/eice.py``; the caller passes the push,
bootstrap imports no boto3 edge), which keeps it in the instance's metadata for 60 s; the
instance's EC2 Instance Connect agent hands it to sshd through ``AuthorizedKeysCommand``
(aws/aws-ec2-instance-connect-config: ``eic_run_authorized_keys``). The private half never
leaves this process and is never written to disk.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import lru_cache

import paramiko

COMMENT = "dsinfra-session"
_lock = threading.Lock()


@dataclass(frozen=True)
class SessionKey:
    pkey: paramiko.PKey
    public_line: str  # "ssh-ed25519 AAAA... dsinfra-session"


def new_session_key() -> SessionKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    return SessionKey(pkey, f"{pkey.get_name()} {pkey.get_base64()} {COMMENT}")


@lru_cache(maxsize=1)
def _cached() -> SessionKey:
    return new_session_key()


def session_key() -> SessionKey:
    """This process's key (made on first use)."""
    with _lock:
        return _cached()
