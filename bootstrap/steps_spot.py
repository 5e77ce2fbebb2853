"""The ``spot-watch`` step, on the nodes of a spot stack only: the interruption watcher
(``spot_watch.py``, standard library only) as the systemd unit ``dsinfra-spot-watch``. On a
spot interruption notice it drains the engine (see spot_watch.py for how and why)."""

from __future__ import annotations

import hashlib

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap.plan import HostPlan
from dsinfra.shipping import script_source

UNIT_NAME = "dsinfra-spot-watch.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
SCRIPT_PATH = "/opt/dsinfra/bin/spot_watch.py"
RECORD_PATH = "/opt/dsinfra/state/spot-interruption.json"
# The engine gets what is left of the two-minute notice, less the unit's stop time.
DRAIN_S = 90


def watcher_source() -> str:
    return script_source("dsinfra.bootstrap.spot_watch")


def systemd_unit(p: HostPlan) -> str:
    """Started with the node, restarted if it dies; -I -S keeps the DLAMI's site-packages and
    PYTHON* variables out of it, as for the GPU probe. Its output is the journal's."""
    command = (f"/usr/bin/python3 -I -S {SCRIPT_PATH} --port {p.engine.port} "
               f"--unit {eng.UNIT_NAME} --interval {p.spot_poll_s:g} --drain-s {DRAIN_S} "
               f"--record {RECORD_PATH}")
    return "\n".join([
        "[Unit]",
        "Description=dsinfra spot interruption watcher (drains the engine on a notice)",
        "After=network-online.target",
        "",
        "[Service]",
        f"ExecStart={command}",
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _files(p: HostPlan) -> dict[str, tuple[str, str]]:
    return {SCRIPT_PATH: (watcher_source(), "0755"), UNIT_PATH: (systemd_unit(p), "0644")}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def watcher_ready(c, p: HostPlan) -> bool:
    files = _files(p)
    got = c.gather({"sums": f"sha256sum {' '.join(files)}",
                    "enabled": f"systemctl is-enabled --quiet {UNIT_NAME}",
                    "active": f"systemctl is-active --quiet {UNIT_NAME}"}, root=True)
    have = {line.split()[1]: line.split()[0] for line in got["sums"].stdout.splitlines()
            if len(line.split()) == 2}
    p.facts["spot_watch_stale"] = [path for path, (content, _) in files.items()
                                   if have.get(path) != _sha256(content)]
    return not p.facts["spot_watch_stale"] and got["enabled"].exited == 0 and \
        got["active"].exited == 0


def start_watcher(c, p: HostPlan) -> None:
    files = _files(p)
    stale = p.facts.get("spot_watch_stale", list(files))
    c.put_files({path: files[path] for path in stale},
                then=f"systemctl daemon-reload && systemctl enable {UNIT_NAME} && "
                     f"systemctl restart {UNIT_NAME}")
