#!/usr/bin/env python3
"""Test double for the commands of an Ubuntu 22.04 GPU host that need hardware or package
repositories (nvidia-smi, apt-get, dpkg, docker, systemctl, nvidia-ctk, the EFA installer,
fi_info, mdadm, mkfs, mount, cloud-init, reboot, curl for the vendor URLs).

Every test host has this script linked under several names in /opt/fakehost/bin, first on
PATH (and on sudo's secure_path). Each host sees its own /opt through a mount namespace, so
/opt/fakehost/state is that host's state: installed packages, running units, arrays and
mounts, the hardware profile (instance type -> GPUs, memory, EFA devices, NVMe disks), fault
injections, and a record of every command run. Standard library only: it runs on the host's
python3 like the real tools would run there.
"""

import fcntl
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

STATE_DIR = os.environ.get("FAKEHOST_STATE", "/opt/fakehost/state")
BIN_DIR = os.path.join(os.path.dirname(STATE_DIR), "bin")


class State:
    """The host's mutable state, under an exclusive lock for the whole command."""

    def __enter__(self):
        self._lock = open(os.path.join(STATE_DIR, "lock"), "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        with open(os.path.join(STATE_DIR, "state.json")) as handle:
            self.data = json.load(handle)
        return self.data

    def __exit__(self, *exc):
        path = os.path.join(STATE_DIR, "state.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
        self._lock.close()


def profile():
    with open(os.path.join(STATE_DIR, "profile.json")) as handle:
        return json.load(handle)


def peek():
    with open(os.path.join(STATE_DIR, "state.json")) as handle:
        return json.load(handle)


def record(name, argv):
    line = json.dumps({"t": round(time.time(), 3), "cmd": name, "argv": argv,
                       "uid": os.getuid()})
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
    path = os.path.join(STATE_DIR, "faults.json")
    if not os.path.exists(path):
        return
    joined = " ".join([name] + argv)
    with State():
        with open(path) as handle:
            faults = json.load(handle)
        hit = next((f for f in faults if f.get("times", 1) > 0 and f["match"] in joined), None)
        if hit is None:
            return
        hit["times"] = hit.get("times", 1) - 1
        with open(path, "w") as handle:
            json.dump(faults, handle)
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


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.umask(0)  # state files are shared by the login user and root
    main()
