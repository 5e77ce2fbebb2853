"""systemctl, reboot and SSH drops on the fake host. A reboot really ends every process of the
host (its network namespace), empties /run, loads the driver that was installed, starts the
enabled units and sshd again, the way a machine coming back would."""

import os
import sys
import time

from fakehost import BIN_DIR, STATE_DIR, State, fail, need_root, peek

ENGINE_UNIT = "dsinfra-engine"
ENGINE_UNIT_FILE = "/etc/systemd/system/dsinfra-engine.service"
UNIT_DIR = "/etc/systemd/system"


def _unit_file(name):
    """dsinfra's own units exist when bootstrap wrote their file, as systemd finds them after
    daemon-reload: a service's ExecStart really runs (the engine, the spot watcher); a timer
    (the idle watch) is state only, its effect is a test running its service's ExecStart. The
    system's units (docker, fabric manager) are state only."""
    path = os.path.join(UNIT_DIR, name if "." in name else name + ".service")
    return path if name.startswith("dsinfra-") and os.path.exists(path) else None


def _runs(name):
    """A dsinfra service whose ExecStart the fake really runs (not a timer)."""
    return "." not in name and _unit_file(name) is not None


def _netns_pids():
    mine = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink("/proc/%s/ns/net" % entry) == mine:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except (OSError, TypeError):
        return False


def _detach(args):
    """Run fakehost.py with ``args`` outside the SSH session (its own session, no stdio).
    Inside the daemon (see fakehost.serve) a fork of it does, instead of a new Python."""
    import fakehost

    if fakehost.IN_DAEMON:
        if os.fork() == 0:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            try:
                from fake_commands import resolve

                resolve(args[0])(args[1:])
            finally:
                os._exit(0)
        return
    import subprocess

    script = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fakehost.py")
    subprocess.Popen([sys.executable, "-SE", script] + args, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, close_fds=True)


def _start_sshd():
    import json
    import subprocess

    with open(os.path.join(STATE_DIR, "sshd_argv.json")) as handle:
        argv = json.load(handle)
    subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def drop_ssh(restart_after_s=None):
    _detach(["__drop", repr(restart_after_s)])


def do_drop(argv):
    import signal

    restart_after = None if argv[0] == "None" else float(argv[0])
    for pid in _netns_pids():
        if _comm(pid) == "sshd":
            os.kill(pid, signal.SIGKILL)
    if restart_after is not None:
        time.sleep(restart_after)
        _start_sshd()


def reboot(argv=()):
    need_root("reboot")
    _detach(["__reboot"])
    print("Rebooting.")


def do_reboot(argv):
    import shutil
    import signal

    time.sleep(0.3)
    for pid in _netns_pids():
        # The fake commands' daemon is the test lab's, not the host's: it survives.
        if pid != os.getpid() and _comm(pid) != "fakehostd":
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for entry in os.listdir("/run"):
        if entry != "sshd":
            path = os.path.join("/run", entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    with State() as state:
        state["boot"] += 1
        state["driver_loaded"] = bool(state.get("driver_installed"))
        state["docker_runtime_active"] = bool(state.get("docker_runtime_configured"))
        state["mounts"] = _fstab_mounts(state)
        for name, unit in state["units"].items():
            unit["active"], unit["pid"] = False, None
            if unit.get("enabled"):
                _start(state, name)
    time.sleep(0.2)
    _start_sshd()


def _fstab_mounts(state):
    mounts = {path: dev for path, dev in state["mounts"].items() if path.startswith("/opt/dlami")}
    with open("/etc/fstab") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 2 and fields[0].startswith(("UUID=", "LABEL=")):
                from fake_commands import fstab_device

                device = fstab_device(state, fields[0])
                if device is not None:  # nofail: a missing one leaves the boot going
                    mounts[fields[1]] = device
    return mounts


def _unit_name(raw):
    return raw[:-len(".service")] if raw.endswith(".service") else raw


def _exists(state, name):
    if name.startswith("dsinfra-"):
        return _unit_file(name) is not None
    return name in state["units"]


def _active(state, name):
    unit = state["units"].get(name, {})
    if name.startswith("dsinfra-") and "." not in name:
        return _alive(unit.get("pid"))
    return bool(unit.get("active"))


def _start(state, name):
    unit = state["units"].setdefault(name, {"enabled": False})
    if name == "nvidia-fabricmanager" and not state.get("driver_loaded"):
        fail("Job for nvidia-fabricmanager.service failed because the control process exited "
             "with error code.", 1)
    if name == "docker":
        state["docker_runtime_active"] = bool(state.get("docker_runtime_configured"))
    if _runs(name):
        import shlex
        import subprocess

        _stop(state, name)
        with open(_unit_file(name)) as handle:
            execstart = next(l.split("=", 1)[1].strip() for l in handle
                             if l.startswith("ExecStart="))
        log_name = "engine.log" if name == ENGINE_UNIT else name + ".log"
        log = open(os.path.join(STATE_DIR, log_name), "a")
        env = dict(os.environ, PATH=BIN_DIR + ":/usr/sbin:/usr/bin:/sbin:/bin")
        unit["pid"] = subprocess.Popen(shlex.split(execstart), start_new_session=True, env=env,
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, close_fds=True).pid
    unit["active"] = True


def _stop(state, name):
    unit = state["units"].get(name, {})
    if unit.get("pid") and _alive(unit["pid"]):
        try:
            os.killpg(unit["pid"], 15)  # SIGTERM (the signal module imports enum)
        except OSError:
            pass
    unit["active"], unit["pid"] = False, None


def _query(state, verb, name):
    if verb == "is-active":
        word = "active" if _exists(state, name) and _active(state, name) else "inactive"
        return word, 0 if word == "active" else 3
    if not _exists(state, name):
        return None, 1
    enabled = state["units"].get(name, {}).get("enabled")
    return ("enabled", 0) if enabled else ("disabled", 1)


def systemctl(argv):
    args = [a for a in argv if not a.startswith("-")]
    quiet = "--quiet" in argv or "-q" in argv
    verb, names = args[0], [_unit_name(a) for a in args[1:]]
    if verb == "reboot":
        return reboot()
    if verb in ("is-active", "is-enabled"):
        state, status = peek(), 0
        for name in names:
            word, code = _query(state, verb, name)
            if word is None:
                fail("Failed to get unit file state for %s.service: No such file or directory"
                     % name, 1)
            if not quiet:
                print(word)
            status = status or code
        return status
    need_root("systemctl")
    with State() as state:
        if verb == "daemon-reload":
            return 0
        for name in names:
            if not _exists(state, name):
                fail("Failed to %s %s.service: Unit %s.service not found." % (verb, name, name), 5)
            if verb == "enable":
                state["units"].setdefault(name, {})["enabled"] = True
                if "--now" in argv and not _active(state, name):
                    _start(state, name)
            elif verb in ("start", "restart"):
                if verb == "start" and _active(state, name):
                    continue
                _start(state, name)
            elif verb == "stop":
                _stop(state, name)
            elif verb == "disable":
                state["units"].setdefault(name, {})["enabled"] = False
                if "--now" in argv:
                    _stop(state, name)
            else:
                fail("systemctl: unsupported verb %s" % verb, 1)
    return 0
