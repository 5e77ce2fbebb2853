"""One managed systemd unit: its files rendered, the stale ones installed, the unit enabled and
started, and verified. Every bootstrap step that installs a service (the engine, the spot
watcher, the idle watcher's timer) is a ``ManagedUnit`` and these three calls:

- ``render_unit``: a unit file from its sections; every key and value is checked against
  systemd's line grammar here, right before it reaches the file, so a value that slipped past
  its own grammar (a newline in a model id) can never add a directive;
- ``unit_ready`` (the step's check, and the runner's verification after the apply): every
  file has the bytes it should (compared by digest: an env file holds the API key), and the
  unit is enabled and active;
- ``install_unit`` (the step's apply): the files the check found stale, then daemon-reload,
  enable and (re)start, in one command.

What a check found and what an apply did live in a ``UnitState``, a typed field of the host's
plan (``HostPlan.units``), not in string keys of its facts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from dsinfra.bootstrap.plan import StepError, UnitState

# systemd.unit(5): a unit name is at most 255 characters of ASCII letters, digits and ":-_.\"
# with a type suffix; dsinfra's own are dsinfra-*.service or .timer.
UNIT_NAME = re.compile(r"dsinfra-[a-z0-9][a-z0-9-]{0,200}\.(service|timer)", re.ASCII)
# systemd.syntax(7): "Key=value" lines; a key is letters, digits, "-" and "_". A value must be
# one line (a newline starts a new directive) that does not end in a backslash (which would
# continue it onto the next line), with no other control characters.
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]")
MAX_VALUE_CHARS = 4096

Section = tuple[str, list[tuple[str, str]]]


class UnitValueError(StepError):
    """A value that would change the unit file's meaning; nothing is installed."""


def unit_value_problem(value: str) -> str | None:
    if _CONTROL.search(value):
        return "a line break or control character"
    if value.endswith("\\"):
        return "a trailing backslash (systemd joins the next line)"
    if len(value) > MAX_VALUE_CHARS:
        return f"more than {MAX_VALUE_CHARS} characters"
    return None


def render_unit(sections: list[Section], *, comments: tuple[str, ...] = ()) -> str:
    """``[Section]`` blocks of ``Key=value`` lines, a blank line after each; ``comments``
    above the first. Raises ``UnitValueError`` naming the key where a value breaks the
    grammar (the value is shown cut: it may be long, never a secret: units hold none)."""
    lines = []
    for comment in comments:
        if problem := unit_value_problem(comment):
            raise UnitValueError(f"unit comment {comment[:80]!r} has {problem}; nothing "
                                 "installed")
        lines.append(f"# {comment}")
    for name, entries in sections:
        if not _KEY.fullmatch(name):
            raise UnitValueError(f"unit section {name[:80]!r} is not a section name")
        lines.append(f"[{name}]")
        for key, value in entries:
            if not _KEY.fullmatch(key):
                raise UnitValueError(f"unit key {key[:80]!r} is not a systemd key")
            if problem := unit_value_problem(value):
                raise UnitValueError(f"unit value of {key} ({value[:80]!r}) has {problem}; "
                                     "nothing installed")
            lines.append(f"{key}={value}")
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class ManagedUnit:
    """A unit systemd enables and keeps running, with every file it needs (its own unit files
    included): path -> (content, mode)."""

    name: str
    files: dict[str, tuple[str, str]]
    # How the apply starts it: "restart" a service, so new files take effect now; "now" for a
    # timer (enable --now), whose oneshot service reads its files at each run.
    start: Literal["restart", "now"] = "restart"

    def __post_init__(self) -> None:
        if not UNIT_NAME.fullmatch(self.name):
            raise UnitValueError(f"unit name {self.name[:80]!r} is not a dsinfra unit name")
        for path, (_, mode) in self.files.items():
            if not re.fullmatch(r"/[A-Za-z0-9_./-]+", path) or ".." in path \
                    or not re.fullmatch(r"0[0-7]{3}", mode):
                raise UnitValueError(f"unit file {path[:80]!r} (mode {mode!r}) is not an "
                                     "absolute plain path with an octal mode")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unit_ready(c, unit: ManagedUnit, state: UnitState) -> bool:
    """Every file has its bytes and the unit is enabled and active (one round trip)."""
    got = c.gather({"sums": f"sha256sum {' '.join(unit.files)}",
                    "enabled": f"systemctl is-enabled --quiet {unit.name}",
                    "active": f"systemctl is-active --quiet {unit.name}"}, root=True)
    have = {line.split()[1]: line.split()[0] for line in got["sums"].stdout.splitlines()
            if len(line.split()) == 2}
    state.stale = [path for path, (content, _) in unit.files.items()
                   if have.get(path) != _sha256(content)]
    return not state.stale and got["enabled"].exited == 0 and got["active"].exited == 0


def install_unit(c, unit: ManagedUnit, state: UnitState) -> None:
    """After ``unit_ready``: the stale files (all of them when it did not run), then the unit
    reloaded, enabled and started, in one command."""
    stale = unit.files if state.stale is None else state.stale
    start = f"systemctl enable --now {unit.name}" if unit.start == "now" else \
        f"systemctl enable {unit.name} && systemctl restart {unit.name}"
    c.put_files({path: unit.files[path] for path in stale},
                then=f"systemctl daemon-reload && {start}")
    state.installed = True


def remove_unit(c, name: str, paths: list[str]) -> None:
    """Disable and stop ``name`` and delete ``paths`` (a unit turned off in the stack file)."""
    if not UNIT_NAME.fullmatch(name) or not all(re.fullmatch(r"/[A-Za-z0-9_./-]+", p)
                                                 and ".." not in p for p in paths):
        raise UnitValueError(f"refusing to remove unit {name[:80]!r} or its files")
    c.sh(f"systemctl disable --now {name}; rm -f {' '.join(paths)} && systemctl daemon-reload",
         root=True)


def unit_absent(c, unit_path: str) -> bool:
    return not c.ok(f"test -e {unit_path}", root=True)
