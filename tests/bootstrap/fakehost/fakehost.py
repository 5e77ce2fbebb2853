#!/usr/bin/python3 -SE
"""Test double for the commands of an Ubuntu 22.04 GPU host that need hardware or package
repositories (nvidia-smi, apt-get, dpkg, docker, systemctl, nvidia-ctk, the EFA installer,
fi_info, mdadm, mkfs, mount, cloud-init, reboot, curl for the vendor URLs).

Every test host has this script linked under several names in /opt/fakehost/bin, first on
PATH (and on sudo's secure_path). Each host sees its own /opt through a mount namespace, so
/opt/fakehost/state is that host's state: installed packages, running units, arrays and
mounts, the hardware profile (instance type -> GPUs, memory, EFA devices, NVMe disks), fault
injections, and a record of every command run. Standard library only: it runs on the host's
python3 like the real tools would run there.

Cheap to start, because a bootstrap runs it ~60 times per host and eight test hosts share the
test machine's cores: no site-packages (-S), and the state is kept with ``marshal`` rather than
``json`` (whose import pulls in ``re`` and ``enum`` and doubled the start-up time). Modules that
only some commands need are imported where they are used.
"""

import _signal
import fcntl
import marshal
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

STATE_DIR = os.environ.get("FAKEHOST_STATE", "/opt/fakehost/state")
BIN_DIR = os.path.join(os.path.dirname(STATE_DIR), "bin")


def load(name):
    """One of the state files (state, profile, faults): plain dicts and lists, marshalled."""
    with open(os.path.join(STATE_DIR, name + ".marshal"), "rb") as handle:
        return marshal.load(handle)


def save(name, data):
    path = os.path.join(STATE_DIR, name + ".marshal")
    with open(path + ".tmp", "wb") as handle:
        marshal.dump(data, handle)
    os.replace(path + ".tmp", path)


class State:
    """The host's mutable state, under an exclusive lock for the whole command."""

    def __enter__(self):
        self._lock = open(os.path.join(STATE_DIR, "lock"), "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.data = load("state")
        return self.data

    def __exit__(self, *exc):
        save("state", self.data)
        self._lock.close()


def profile():
    return load("profile")


def peek():
    return load("state")


def record(name, argv):
    """One line per command, a Python literal (the tests read it with ast.literal_eval)."""
    line = repr({"t": round(time.time(), 3), "cmd": name, "argv": argv, "uid": os.getuid()})
    with open(os.path.join(STATE_DIR, "commands.log"), "a") as handle:
        handle.write(line + "\n")


def fail(message, code=1):
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)


def need_root(name):
    if os.geteuid() != 0:
        fail("%s: Permission denied (are you root?)" % name, 100 if name == "apt-get" else 1)


def apply_faults(name, argv):
    """Injected failures: {"match": "apt-get install", "exit": 100, "stderr": "...",
    "times": 1, "drop_ssh": false, "restart_sshd_after_s": null}."""
    if not os.path.exists(os.path.join(STATE_DIR, "faults.marshal")):
        return
    joined = " ".join([name] + argv)
    with State():
        faults = load("faults")
        hit = next((f for f in faults if f.get("times", 1) > 0 and f["match"] in joined), None)
        if hit is None:
            return
        hit["times"] = hit.get("times", 1) - 1
        save("faults", faults)
    if hit.get("drop_ssh"):
        from fake_power import drop_ssh

        drop_ssh(hit.get("restart_sshd_after_s"))
        time.sleep(30)  # the session is being killed under us
    if hit.get("sleep_s"):
        time.sleep(hit["sleep_s"])
    if "exit" in hit:
        fail(hit.get("stderr", "injected failure"), hit["exit"])


def main():
    name = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if name == "fakehost.py" and argv:
        name, argv = argv[0], argv[1:]
    record(name, argv)
    apply_faults(name, argv)
    from fake_commands import resolve

    handler = resolve(name)
    if handler is None:
        fail("%s: command not found" % name, 127)
    sys.exit(handler(argv) or 0)


def run():
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # _signal: signal.py imports enum
    os.umask(0)  # state files are shared by the login user and root
    main()


if __name__ == "__main__":
    run()
