#!/usr/bin/python3 -SE
"""Test double for the commands of an Ubuntu 22.04 GPU host that need hardware or package
repositories (nvidia-smi, apt-get, dpkg, docker, systemctl, nvidia-ctk, the EFA installer,
fi_info, mdadm, mkfs, mount, cloud-init, reboot, curl for the vendor URLs).

Every test host has this script linked under several names in /opt/fakehost/bin, first on
PATH (and on sudo's secure_path). Each host sees its own /opt through a mount namespace, so
/opt/fakehost/state is that host's state: installed packages, running units, arrays and
mounts, the hardware profile (the host's recorded command outputs from
tests/fixtures/hosts/<type>/<image>/ and what they imply: GPUs, NVMe disks, EFA devices, of
which the attached ones exist), fault injections, and a record of every command run. Standard library only: it runs on the host's
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
    """One line per command, a Python literal (hostlab.py TestHost.commands reads it)."""
    line = repr({"t": round(time.time(), 3), "cmd": name, "argv": argv, "uid": os.geteuid()})
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
    "times": 1, "drop_ssh": false, "restart_sshd_after_s": null, "sleep_s": 0,
    "hold_until": "/path"}. ``hold_until``: the command waits (at most 60 s) until the test
    creates that file: a test acts while the command is certainly still running, however
    loaded the machine."""
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
    if hit.get("hold_until"):
        deadline = time.time() + 60
        while not os.path.exists(hit["hold_until"]) and time.time() < deadline:
            time.sleep(0.05)
    if "exit" in hit:
        fail(hit.get("stderr", "injected failure"), hit["exit"])


IN_DAEMON = False  # set in the daemon (serve)
DAEMON_PORT = 7391  # on the host's own loopback (each test host has its network namespace)
def needs_own_process(name, argv):
    """Commands the daemon hands back to fakehost.py: a serving container outlives the
    command, and an injected fault may hold the session (an SSH drop) or sleep. (The internal
    __reboot and __drop never reach the daemon: they have no links, and fake_power forks them.)"""
    if os.path.exists(os.path.join(STATE_DIR, "faults.marshal")):
        return True
    from fake_docker import RAY_WORKER

    if name == "journalctl" and "-f" in argv:
        return True  # it streams until killed: the daemon answers only when a command ends
    if name == "docker" and ("--password-stdin" in argv or argv[:1] == ["build"]):
        return True  # they read standard input, which the daemon does not get
    return name == "docker" and argv[:1] == ["run"] and argv[-2:] != ["nvidia-smi", "-L"] \
        and RAY_WORKER not in " ".join(argv)


def serve():
    """``fakehost.py __daemon``: the commands' fast path. The test host's fake commands are
    links to ``fakehost-client`` (fakehost-client.c, compiled by the lab), which sends its
    uid, working directory and argv here; the daemon runs the same handler the script would,
    with the caller's effective uid and groups and in its directory, so a command costs a few
    syscalls instead of a Python start-up. Requests are served one at a time (one host's commands, and no handler waits).
    What it cannot do the same way (``needs_own_process``) the client runs as ``fakehost.py``
    itself."""
    import io
    import pwd
    import socket

    import fake_commands
    import fake_docker  # noqa: F401 - loaded once here, not per command
    import fake_gpu  # noqa: F401
    import fake_power  # noqa: F401
    import fakehost  # this file as a module (the handlers' view of it), not __main__

    fakehost.IN_DAEMON = True
    with open("/proc/self/comm", "w") as handle:
        handle.write("fakehostd")  # reboots and the lab's reset spare it by this name
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # what handlers start reaps itself
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", DAEMON_PORT))
    listener.listen(64)
    users, root_groups = {}, os.getgroups()
    while True:
        conn, _ = listener.accept()
        with conn:
            request = _request(conn)
            if request is None:
                continue
            uid, cwd, name, argv = request
            if needs_own_process(name, argv):
                conn.sendall(b"EXEC 0 0\n")
                continue
            user = users.get(uid) or users.setdefault(uid, pwd.getpwuid(uid))
            out, err = io.StringIO(), io.StringIO()
            saved = sys.stdout, sys.stderr
            os.setgroups([user.pw_gid])
            os.setegid(user.pw_gid)
            os.seteuid(uid)
            try:
                try:
                    os.chdir(cwd)
                except OSError:
                    os.chdir("/")
                sys.stdout, sys.stderr = out, err
                code = _run(fake_commands, name, argv, err)
            finally:
                sys.stdout, sys.stderr = saved
                os.seteuid(0)
                os.setegid(0)
                os.setgroups(root_groups)
                os.chdir("/")
            body_out, body_err = out.getvalue().encode(), err.getvalue().encode()
            header = b"HOLD" if code is HOLD else b"%d" % code
            try:
                conn.sendall(header + b" %d %d\n" % (len(body_out), len(body_err)) + body_out
                             + body_err)
            except OSError:
                pass  # the caller went away (its session was killed)


def _request(conn):
    data, fields = b"", []
    while len(fields) < 3 or len(fields) < 4 + int(fields[2]):
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        fields = [f.decode() for f in data.split(b"\0")[:-1]]
    return int(fields[0]), fields[1], fields[3], fields[4:4 + int(fields[2])]


HOLD = "hold"  # _run's answer for a command whose process only waits until it is killed


def _run(fake_commands, name, argv, err):
    import fake_docker

    try:
        record(name, argv)
        handler = fake_commands.resolve(name)
        if handler is None:
            fail("%s: command not found" % name, 127)
        return handler(argv) or 0
    except fake_docker.Hold:
        return HOLD
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            err.write(exit_.code + "\n")
            return 1
        return exit_.code or 0
    except Exception:  # noqa: BLE001 - what Python would print before exiting 1
        import traceback

        traceback.print_exc(file=err)
        return 1


def main():
    name = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if name == "fakehost.py" and argv:
        name, argv = argv[0], argv[1:]
    if name == "__daemon":
        return serve()
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
