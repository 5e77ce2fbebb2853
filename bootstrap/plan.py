"""The records a bootstrap run passes around: one ``HostPlan`` per host (what it should become),
``Step`` (check + apply), and the per-step results the report is made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.tiers import TIERS

if TYPE_CHECKING:  # bootstrap/engine.py renders its unit with bootstrap/units.py, which needs us
    from dsinfra.bootstrap.engine import EnginePlan

Status = Literal["applied", "already done", "verified", "failed", "skipped", "not reached"]
Phase = Literal["prepare", "engine", "health"]


class RebootRequired(Exception):
    """An apply installed something (a kernel module) that needs the host rebooted."""


class StepError(Exception):
    """A step could not reach its goal; ``detail`` says what is wrong and what to do."""

    def __init__(self, detail: str, *, command: str | None = None, output_tail: str = "") -> None:
        super().__init__(detail)
        self.detail, self.command, self.output_tail = detail, command, output_tail


@dataclass
class UnitState:
    """What a managed unit's last check found and what its apply did, on one host
    (bootstrap/units.py)."""

    stale: list[str] | None = None  # files missing or different; None: not checked yet
    installed: bool = False  # written and (re)started in this run


@dataclass
class UnitStates:
    """The units a bootstrap may install on a host, one typed field each."""

    engine: UnitState = field(default_factory=UnitState)
    spot_watch: UnitState = field(default_factory=UnitState)
    idle_watch: UnitState = field(default_factory=UnitState)


@dataclass
class HostPlan:
    host: HostSpec
    engine: EnginePlan
    secrets: Secrets
    tier: str = "dev"
    region: str = "us-east-1"  # the stack's: node-side AWS calls (the node kit) go there
    node_kit: bool = False  # a node-side tool needs /opt/dsinfra/kit (bootstrap/nodekit.py)
    node_aws: dict[str, str] = field(default_factory=dict)  # extra node AWS config settings
    idle_watch: Any = None  # bootstrap/idle_watch.IdleWatch on the head; None: autostop off
    health_timeout_s: float = TIERS["dev"].health_timeout_s
    health_poll_s: float = 2.0
    health_report_s: float = 15.0  # how often a wait for the engine reports back
    spot: bool = False  # a spot stack: the spot-watch step installs the interruption watcher
    spot_poll_s: float = 5.0  # how often the watcher asks IMDS (AWS recommends 5 s)
    image_wait_s: float = 45 * 60  # a worker's wait for the head's image in ECR
    image_poll_s: float = 10.0
    facts: dict[str, Any] = field(default_factory=dict)  # what the host is (read, not set)
    units: UnitStates = field(default_factory=UnitStates)  # the managed units' check/apply
    on_progress: Callable[[str], None] = lambda message: None
    stop_waiting: Callable[[], str | None] = lambda: None  # a reason to give up waiting

    @property
    def spec(self):
        return self.host.spec

    @property
    def dlami(self) -> bool:
        return bool(self.facts.get("dlami"))


Check = Callable[[Any, HostPlan], bool]
Apply = Callable[[Any, HostPlan], None]


@dataclass(frozen=True)
class Step:
    """``check`` says whether the host already is what the step makes it; ``apply`` makes it so.

    A step without ``apply`` only verifies (the GPU probe, the container GPU count): when its
    check fails, the run fails with what the check found.
    """

    name: str
    check: Check
    apply: Apply | None = None
    applies_to: Callable[[HostPlan], bool] = lambda plan: True
    phase: Phase = "prepare"
    describe: str = ""


@dataclass
class StepResult:
    step: str
    status: Status
    duration_s: float = 0.0
    detail: str = ""
    command: str | None = None
    output_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "duration_s": round(self.duration_s, 3),
                "detail": self.detail, "command": self.command, "output_tail": self.output_tail}


@dataclass
class HostResult:
    host: str
    address: str
    role: str
    instance_type: str
    log_path: str | None
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status != "failed" for s in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "address": self.address, "role": self.role,
                "instance_type": self.instance_type, "ok": self.ok, "error": self.error,
                "log": self.log_path, "steps": [s.to_dict() for s in self.steps]}


@dataclass
class BootstrapReport:
    stack: str
    run_dir: str
    endpoint: str | None
    hosts: list[HostResult]
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and all(h.ok for h in self.hosts)

    def applied(self) -> list[tuple[str, str]]:
        return [(h.host, s.step) for h in self.hosts for s in self.steps_of(h, "applied")]

    @staticmethod
    def steps_of(host: HostResult, status: Status) -> list[StepResult]:
        return [s for s in host.steps if s.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "ok": self.ok, "endpoint": self.endpoint,
                "run_dir": self.run_dir, "duration_s": round(self.duration_s, 3),
                "hosts": [h.to_dict() for h in self.hosts]}
