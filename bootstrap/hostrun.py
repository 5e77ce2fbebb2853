"""One host's way through the steps: connect (waiting for SSH), check, apply, verify, reconnect
after drops with backoff, reboot when a kernel module asks for it. Results, never exceptions,
come out: the runner must see every host's outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paramiko

from dsinfra.bootstrap import marker
from dsinfra.bootstrap.hostkeys import HostKeyRefused, KnownHosts
from dsinfra.bootstrap.plan import HostPlan, HostResult, RebootRequired, Step, StepError, \
    StepResult
from dsinfra.bootstrap.remote import CommandFailed, HostConnection, HostLog, SshSettings, \
    close_quietly, is_drop, open_connection

REBOOT_MARKER = "/run/dsinfra-reboot-pending"  # /run is tmpfs: gone once the host rebooted
REBOOT_DELAY_S = 1  # the reboot starts this long after the command returns


class HostRun:
    def __init__(self, plan: HostPlan, known: KnownHosts, log: HostLog, settings: SshSettings,
                 on_step: Callable[[str, str, str], None]) -> None:
        self.plan, self.known, self.log, self.settings = plan, known, log, settings
        self.on_step = on_step  # (host, step, status) for the live display
        self.conn: HostConnection | None = None
        self.result = HostResult(host=plan.host.name, address=plan.host.id, role=plan.host.role,
                                 instance_type=plan.host.instance_type,
                                 log_path=str(log.path) if log.path else None)
        plan.on_progress = lambda message: self._progress(message)
        # A step that follows long work on the host (the weights copy) stops on Ctrl-C; the
        # runner gives the head's engine-phase wait its own reason later.
        plan.stop_waiting = lambda: "interrupted" if self.interrupted.is_set() else None
        self._current = ""
        self.fast = False
        self.interrupted = threading.Event()  # shared by every host of the run (Ctrl-C)

    @property
    def failed(self) -> bool:
        return not self.result.ok

    def _progress(self, message: str) -> None:
        self.log.write(f"[{self._current}] {message}")
        self.on_step(self.plan.host.name, self._current, message)

    # --- connection ------------------------------------------------------------------------

    def _connect(self, budget_s: float) -> HostConnection:
        """Connect, retrying drops with doubling backoff until ``budget_s`` runs out."""
        if self.conn is not None and self.conn.is_connected:
            return self.conn
        close_quietly(self.conn)
        deadline, delay = time.monotonic() + budget_s, self.settings.backoff_s
        attempt = 0
        while True:
            attempt += 1
            try:
                self.conn = open_connection(self.plan.host, self.known, self.log,
                                            self.plan.secrets, self.settings)
                return self.conn
            except Exception as exc:  # noqa: BLE001 - sorted by is_drop below
                self.conn = None
                retry = is_drop(exc) or self._agent_not_ready(exc)
                if not retry or time.monotonic() + delay > deadline:
                    raise
                self.log.write(f"ssh attempt {attempt} failed ({_describe(exc)}); "
                               f"retrying in {delay:.1f}s")
                self.on_step(self.plan.host.name, self._current,
                             f"SSH unreachable, retry {attempt} in {delay:.0f}s")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _agent_not_ready(self, exc: BaseException) -> bool:
        """A pushed key refused on a fresh node: its EC2 Instance Connect agent may still be
        installing from user data (infra/nodes.py), so it is retried like a drop, within the
        same SSH wait; each retry pushes the key again."""
        host = self.plan.host
        return (host.key_path is None and host.key_push is not None
                and isinstance(exc, paramiko.AuthenticationException))

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None

    # --- steps -----------------------------------------------------------------------------

    def run_steps(self, steps: list[Step]) -> None:
        for step in steps:
            if self.failed or self.interrupted.is_set():
                detail = "interrupted: the next run resumes here" \
                    if self.interrupted.is_set() and not self.failed else ""
                self.result.steps.append(StepResult(step.name, "not reached", detail=detail))
                continue
            if not step.applies_to(self.plan):
                self.result.steps.append(StepResult(step.name, "skipped",
                                                    detail="not needed on this host"))
                continue
            self._current = step.name
            self.on_step(self.plan.host.name, step.name, "running")
            started = time.monotonic()
            result = self._run_step(step)
            result.duration_s = time.monotonic() - started
            self.log.write(f"[{step.name}] {result.status} in {result.duration_s:.2f}s"
                           + (f": {result.detail}" if result.detail else ""))
            self.result.steps.append(result)
            self.on_step(self.plan.host.name, step.name, result.status)

    def fast_path(self, steps: list[Step], all_names: list[str]) -> bool:
        """True when the host's marker shows it finished this same plan since its last boot:
        ``steps`` are then recorded as already done without running their checks."""
        try:
            if not marker.unchanged(self._connect(self.settings.ssh_wait_s), self.plan,
                                    all_names):
                return False
        except Exception as exc:  # noqa: BLE001 - unreachable or refused: report it once
            self.result.steps.append(self._failure(steps[0], exc))
            return True
        for step in steps:
            status = "already done" if step.applies_to(self.plan) else "skipped"
            self.result.steps.append(StepResult(step.name, status,
                                                detail="unchanged since the last run (marker)"))
        self.fast = True
        self.on_step(self.plan.host.name, "engine", "unchanged since the last run")
        return True

    def write_marker(self, all_names: list[str]) -> None:
        if self.failed:
            # Whatever the marker said, the host is not serving: the next run checks it all.
            try:
                self._connect(self.settings.backoff_s).sh(f"rm -f {marker.MARKER}", root=True)
            except Exception as exc:  # noqa: BLE001 - unreachable: it was reported already
                self.log.write(f"could not remove the bootstrap marker: {exc}")
            return
        if self.fast:
            return
        try:
            marker.write(self._connect(self.settings.ssh_wait_s), self.plan, all_names)
        except Exception as exc:  # noqa: BLE001 - a missing marker only costs the next run time
            self.log.write(f"could not write the bootstrap marker: {exc}")

    def complete(self, steps: list[Step]) -> None:
        """One result per step, in step order, whatever happened (the report is a grid)."""
        seen = {r.step for r in self.result.steps}
        self.result.steps += [StepResult(s.name, "not reached") for s in steps
                              if s.name not in seen]
        order = {s.name: i for i, s in enumerate(steps)}
        self.result.steps.sort(key=lambda r: order.get(r.step, len(order)))

    def skip_rest(self, steps: list[Step], reason: str) -> None:
        for step in steps:
            self.result.steps.append(StepResult(step.name, "not reached", detail=reason))

    def _run_step(self, step: Step) -> StepResult:
        drops, rebooted = 0, False
        while True:
            try:
                budget = self.settings.ssh_wait_s if not self.result.steps else \
                    self.settings.backoff_s * 2 ** self.settings.attempts
                result = self._check_apply(step, self._connect(budget))
                if rebooted and result.status == "already done":
                    result.status, result.detail = "applied", "rebooted to load the driver"
                return result
            except RebootRequired as exc:
                try:
                    self._reboot(str(exc))
                    rebooted = True
                except Exception as reboot_exc:  # noqa: BLE001
                    return self._failure(step, reboot_exc)
            except Exception as exc:  # noqa: BLE001 - every outcome becomes a result
                if not is_drop(exc) or drops >= self.settings.attempts:
                    return self._failure(step, exc, drops)
                drops += 1
                self.log.write(f"[{step.name}] SSH dropped ({_describe(exc)}); reconnecting "
                               f"(attempt {drops} of {self.settings.attempts})")
                self.close()

    def _check_apply(self, step: Step, conn: HostConnection) -> StepResult:
        if step.check(conn, self.plan):
            return StepResult(step.name, "verified" if step.apply is None else "already done")
        if step.apply is None:
            raise StepError(f"{step.describe or step.name}: check failed")
        step.apply(conn, self.plan)
        if not step.check(self.conn or self._connect(self.settings.ssh_wait_s), self.plan):
            raise StepError(f"{step.describe or step.name}: still not done after applying "
                            "(see the host log)")
        return StepResult(step.name, "applied")

    def _reboot(self, why: str) -> None:
        conn = self._connect(self.settings.ssh_wait_s)
        self._progress(f"rebooting ({why})")
        conn.sh(f"touch {REBOOT_MARKER} && (nohup sh -c 'sleep {REBOOT_DELAY_S}; "
                "systemctl reboot' >/dev/null 2>&1 &)", root=True)
        deadline = time.monotonic() + self.settings.reboot_wait_s
        time.sleep(REBOOT_DELAY_S)  # the host is certainly still up until then
        while time.monotonic() < deadline:
            time.sleep(self.settings.backoff_s)
            # The old boot's session stays open until the host goes down, and is polled on;
            # a new connection (a full handshake) only once that one drops.
            conn = self._connect(max(deadline - time.monotonic(), 1.0))
            try:
                if not conn.ok(f"test -e {REBOOT_MARKER}"):
                    self._progress("back after reboot")
                    return
            except Exception as exc:  # noqa: BLE001
                if not is_drop(exc):
                    raise
                self.close()
        raise StepError(f"the host did not come back within {self.settings.reboot_wait_s:.0f}s "
                        "after a reboot")

    def _failure(self, step: Step, exc: BaseException, drops: int = 0) -> StepResult:
        host = self.plan.host.name
        redact = self.plan.secrets.redact
        if isinstance(exc, CommandFailed):
            detail = f"{host}: step {step.name}: command exited {exc.exit_code}"
            return StepResult(step.name, "failed", detail=redact(detail),
                              command=redact(exc.command), output_tail=redact(exc.output_tail))
        if isinstance(exc, StepError):
            return StepResult(step.name, "failed", detail=redact(f"{host}: step {step.name}: "
                                                                 f"{exc.detail}"),
                              command=exc.command and redact(exc.command),
                              output_tail=redact(exc.output_tail))
        if isinstance(exc, HostKeyRefused):
            detail = str(exc)
        elif isinstance(exc, paramiko.AuthenticationException) and not is_drop(exc):
            detail = f"{host}: SSH login as {self.plan.host.user} refused: {exc}"
        elif is_drop(exc):
            detail = (f"{host}: step {step.name}: SSH connection lost and not regained after "
                      f"{drops} reconnect attempt(s) with backoff: {_describe(exc)}")
        else:
            detail = f"{host}: step {step.name}: {type(exc).__name__}: {exc}"
        self.log.write(f"[{step.name}] failed: {detail}")
        return StepResult(step.name, "failed", detail=redact(detail))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
