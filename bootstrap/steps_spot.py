"""The ``spot-watch`` step, on the nodes of a spot stack only: the interruption watcher
(``spot_watch.py``, standard library only) as the systemd unit ``dsinfra-spot-watch``. On a
spot interruption notice it drains the engine (see spot_watch.py for how and why)."""

from __future__ import annotations

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap.plan import HostPlan
from dsinfra.bootstrap.units import ManagedUnit, install_unit, render_unit, unit_ready
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
    command = (f"/usr/bin/python3 -I -S {SCRIPT_PATH} --port {p.engine.port:d} "
               f"--unit {eng.UNIT_NAME} --interval {p.spot_poll_s:g} --drain-s {DRAIN_S:d} "
               f"--record {RECORD_PATH}")
    return render_unit([
        ("Unit", [("Description",
                   "dsinfra spot interruption watcher (drains the engine on a notice)"),
                  ("After", "network-online.target")]),
        ("Service", [("ExecStart", command), ("Restart", "on-failure"), ("RestartSec", "5")]),
        ("Install", [("WantedBy", "multi-user.target")]),
    ])


def watcher_unit(p: HostPlan) -> ManagedUnit:
    return ManagedUnit(UNIT_NAME, {SCRIPT_PATH: (watcher_source(), "0755"),
                                   UNIT_PATH: (systemd_unit(p), "0644")})


def watcher_ready(c, p: HostPlan) -> bool:
    return unit_ready(c, watcher_unit(p), p.units.spot_watch)


def start_watcher(c, p: HostPlan) -> None:
    install_unit(c, watcher_unit(p), p.units.spot_watch)
