"""The test hosts' EC2 Instance Connect agent: sshd's ``AuthorizedKeysCommand``.

The real agent (aws/aws-ec2-instance-connect-config, package ``ec2-instance-connect``) sets
``AuthorizedKeysCommand /usr/share/ec2-instance-connect/eic_run_authorized_keys %u %f`` (run as
``ec2-instance-connect``); that script reads the instance metadata's
``managed-ssh-keys/active-keys/<user>/``, where a key sent with ``SendSSHPublicKey`` stays 60 s,
and prints the active keys for sshd. Here the metadata is a file per test host
(``<host root>/eic/<user>``): one ``<expiry epoch> <key line>`` per pushed key, written by the
tests' double of SendSSHPublicKey (``hostlab.TestHost.push_key``); this prints the lines whose
60 s have not run out, as the metadata serves only active keys. (The real script also checks a
signature AWS adds to each key; there is no AWS signer here.)

Usage (sshd): python3 eic_agent.py <host eic dir> <user>
"""

import sys
import time
from pathlib import Path


def main() -> int:
    store = Path(sys.argv[1]) / sys.argv[2]
    if not store.exists():
        return 0
    now = time.time()
    for line in store.read_text().splitlines():
        expiry, _, key = line.partition(" ")
        if key and float(expiry) > now:
            print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
