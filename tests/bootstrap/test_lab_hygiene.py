"""Issue 21 items 1 and 4: a test run that holds sshd test hosts and is SIGKILLed leaves
nothing behind (the lab's watchdog cleans up), and when the watchdog dies too, the next lab's
sweep cleans up. The run is killed after it reports its host is up, never after a delay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hostlab

HERE = Path(__file__).resolve().parent

TINY = '''
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {here!r}); sys.path.insert(0, {tests!r})
import hostlab, motoserver

def test_hold_a_host():
    lab = hostlab.HostLab(Path(tempfile.mkdtemp(prefix="dsinfra-hostlab-")))
    host = lab.fresh("single")
    moto, _ = motoserver.start(lab.service_ip)
    print("LAB-READY " + json.dumps({{"marker": str(lab.marker), "record": lab.record,
          "pids": host.pids() + [moto.pid], "watchdog": lab.watchdog.pid}}), flush=True)
    time.sleep(600)
'''


def _leftovers(record: dict, pids: list[int]) -> list[str]:
    left = []
    if Path(record["sudoers"]).exists():
        left.append(record["sudoers"])
    namespaces = hostlab.sh("ip", "netns", "list").stdout.split()
    left += [n for n in record["netns"] if n in namespaces]
    left += [v for v in record["veths"] if Path(f"/sys/class/net/{v}").exists()]
    if f"inet {record['service_ip']}/32" in hostlab.sh("ip", "-4", "addr", "show", "lo").stdout:
        left.append(record["service_ip"])
    if f" {record['base']} " in Path("/proc/mounts").read_text():
        left.append(f"mount {record['base']}")
    left += [f"pid {p}" for p in pids if hostlab.start_time(p) is not None]
    return left


def _wait_for(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if not value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    (tmp_path / "test_tiny.py").write_text(
        TINY.format(here=str(HERE), tests=str(HERE.parent)))
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--rootdir", str(tmp_path), str(tmp_path / "test_tiny.py")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    seen = []
    for line in run.stdout:  # blocks until the ready line, or until the run ends
        seen.append(line)
        if line.startswith("LAB-READY "):
            return run, json.loads(line.split(" ", 1)[1])
    run.wait()
    pytest.fail("the run ended before its host was up:\n" + "".join(seen))


@pytest.fixture
def root_lab_tools():
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        pytest.skip("the sshd test hosts need root and openssh-server")


def test_a_killed_run_leaves_nothing_behind(tmp_path, root_lab_tools):
    run, ready = _start_run(tmp_path)
    record = ready["record"]
    assert _leftovers(record, ready["pids"]), "the run reported a host that is not there"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    left = _wait_for(lambda: _leftovers(record, ready["pids"]), timeout_s=20)
    assert left == []
    assert not Path(ready["marker"]).exists()


def test_the_next_lab_sweeps_what_a_dead_run_and_its_watchdog_left(tmp_path, root_lab_tools):
    run, ready = _start_run(tmp_path)
    record = ready["record"]
    os.kill(ready["watchdog"], signal.SIGKILL)  # a kill of everything: nobody cleans up
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert _wait_for(lambda: hostlab.start_time(ready["watchdog"]) is not None, 10) is False
    # moto dies with its parent (PR_SET_PDEATHSIG), whatever else is left.
    moto = ready["pids"][-1]
    assert _wait_for(lambda: hostlab.start_time(moto) is not None, 10) is False
    left = _leftovers(record, ready["pids"])
    assert record["sudoers"] in left and record["netns"][0] in left
    assert Path(ready["marker"]).exists()

    swept = hostlab.sweep()

    assert record["runid"] in swept
    assert _wait_for(lambda: _leftovers(record, ready["pids"]), timeout_s=10) == []
    assert not Path(ready["marker"]).exists()


def test_the_sweep_leaves_a_live_lab_alone(tmp_path, root_lab_tools):
    run, ready = _start_run(tmp_path)
    try:
        assert ready["record"]["runid"] not in hostlab.sweep()
        assert Path(ready["marker"]).exists()
        assert Path(ready["record"]["sudoers"]).exists()
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert _wait_for(lambda: _leftovers(ready["record"], ready["pids"]), timeout_s=20) == []


def test_the_sudo_grant_is_the_bootstraps_root_shell_and_the_fake_commands_only(lab):
    assert hostlab.sh("visudo", "-cf", str(lab.sudoers), check=False).returncode == 0
    def as_user(script: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", hostlab.USER, "--", "sh", "-c", script],
                              input=stdin, capture_output=True, text=True, timeout=30)
    shell = as_user("sudo -n bash --noprofile --norc", "id -u\n")
    assert (shell.returncode, shell.stdout) == (0, "0\n"), shell.stderr
    assert f"NOPASSWD: {', '.join(hostlab.SUDO_COMMANDS)}\n" in lab.sudoers.read_text()
    assert "ALL\n" not in lab.sudoers.read_text()
    others = [p for p in lab.sudoers.parent.glob("dsinfra-test-*") if p != lab.sudoers]
    if others:  # sudo rules are machine-wide: an older lab's NOPASSWD:ALL grants all to all
        pytest.skip(f"other labs' sudo grants apply to {hostlab.USER} too: {others}")
    for refused in ("sudo -n id -u", "sudo -n bash -c 'id -u'", "sudo -n sh"):
        result = as_user(refused)
        assert result.returncode != 0 and result.stdout != "0\n", refused
