"""What enforces a stack's budget and TTL once ``up`` returns, and when it last ran (issue 22
item 4).

Two enforcers, one precedence:

* ``guard`` (the default): ``up`` deploys or updates the in-account guard (ops/guard_deploy.py,
  the same Automation API seam as ``dsinfra guard deploy``), adding the stack's region to the
  regions it already checks and keeping its interval; the guard then enforces.
* ``schedule`` (``--enforcer schedule``, the user's choice): the local ``schedule install``
  timer. ``up`` accepts it only if its own last run, recorded in the state dir's ledger,
  enforced (installed with ``--enforce``), read the stack's region and account, and succeeded
  within two intervals of now; otherwise ``up`` refuses before creating anything (exit 2).
* ``none`` (``--no-enforcer``): goes ahead with a loud warning: printed, audited
  (``enforcer.none``) and sent through the notify path; ``plan`` and ``status`` repeat it.

When an enforcer last ran is only ever read from what it writes itself on each run: the guard's
heartbeat item in its DynamoDB table (cloud/guard_store.py) and the scheduled check's
``schedule`` heartbeat row in the local ledger (cloud/ledger.py), both written by
ops/check.py's ``record_heartbeat``. Where the guard lives (function, table, home region) and
which enforcer each stack was brought up with are read back from the audit log, where ``up``
and ``guard deploy`` record them. An enforcer whose last good run is more than two intervals
old is ``stale``: a loud warning everywhere it is shown (money fails safe)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from dsinfra.errors import UserError
from dsinfra.ops.guard_deploy import DEFAULT_GUARD_STACK, deploy_guard

DEFAULT_EVERY_MINUTES = 15
GUARD, SCHEDULE, NONE = "guard", "schedule", "none"
CHOICES = (GUARD, SCHEDULE, NONE)  # --enforcer values; GUARD is the default

NO_ENFORCER_WARNING = ("no enforcer: --no-enforcer was given, so nothing acts on this stack's "
                       "budget or TTL after `up` returns; run `dsinfra guard deploy --enforce` "
                       "or `dsinfra schedule install --enforce`")
SCHEDULE_NAME = "dsinfra-cost-check"  # dsinfra/schedule.py's UNIT_NAME / CRON_MARKER
GUARD_LOG_HINT = "see the guard's log group /aws/lambda/dsinfra-budget-guard"
SCHEDULE_LOG_HINT = "see `dsinfra schedule show` and the check's log"


def utcnow() -> datetime:
    """The clock every enforcer view is judged against (tests replace it)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Enforcer:
    kind: str  # "guard", "schedule" or "none"
    name: str  # the guard's Lambda function, the schedule's unit, or ""
    regions: tuple[str, ...]
    every_minutes: int | None
    deployed_at: str | None  # ISO time this run deployed or updated it (guard)
    last_run: str | None  # its own last run, as it recorded it; None: never (or unknown)
    warning: str = ""
    # "ok", "not yet" (never ran), "failing" (ran, but no good run within two intervals),
    # "stale" (no good run within two intervals), "unknown" (its record could not be read),
    # "not deployed", "not covered" (does not cover this region / enforce), "none", and
    # "not found" (status: nothing recorded on this machine covers it; shown, not warned:
    # the guard may have been deployed from another machine)
    state: str = ""
    last_good: str | None = None
    account: str | None = None
    enforce: bool | None = None
    table: str | None = None  # the guard's DynamoDB table (where its heartbeat is)
    home_region: str | None = None  # the region the guard (and its table) lives in
    chosen_by: str = ""  # "default", "--enforcer schedule", "--no-enforcer", "up at <time>"
    # when the stack was brought up with --no-enforcer (read back from the audit log) and
    # nothing covers it since; None otherwise
    no_enforcer_since: str | None = None

    @property
    def stale(self) -> bool:
        return self.state in ("stale", "failing")

    @property
    def loud(self) -> bool:
        """Shown as a warning: nothing enforces (or would), or what does is not running well.
        A guard not deployed yet, or not covering this region, is what ``up`` fixes itself."""
        return ((self.kind == NONE and self.state != "not found") or self.stale
                or self.state == "unknown"
                or self.no_enforcer_since is not None
                or (self.kind == SCHEDULE and self.state != "ok"))

    @property
    def covers(self) -> bool:
        return self.kind != NONE and self.state in ("ok", "not yet")

    def line(self) -> str:
        if self.kind == NONE:
            return f"enforcer: none ({self.warning})"
        if self.state == "not deployed":
            return f"enforcer: guard not deployed yet ({self.warning})"
        what = (f"guard {self.name}" if self.kind == GUARD else
                f"schedule {self.name} (this machine)")
        where = f" in {', '.join(self.regions)}" if self.regions else ""
        account = f", account {self.account}" if self.account else ""
        every = f", every {self.every_minutes} min" if self.every_minutes else ""
        deployed = f", deployed {self.deployed_at}" if self.deployed_at else ""
        return f"enforcer: {what}{where}{every}{account}{deployed}; last run {_ran(self)}"

    def short(self) -> str:
        """The few words ``status`` shows per stack (its warnings carry the rest)."""
        if self.kind == NONE:
            return ("none found in this machine's records" if self.state == "not found" else
                    "none (brought up with --no-enforcer)" if self.no_enforcer_since else
                    "none")
        if self.state == "not deployed":
            return "guard not deployed yet"
        every = f", every {self.every_minutes} min" if self.every_minutes else ""
        flag = "" if self.state in ("ok", "not yet") else f" ({self.state.upper()})"
        return (f"{self.kind} {self.name} ({', '.join(self.regions)}{every}), last run "
                f"{_ran(self)}{flag}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["regions"] = list(self.regions)
        out["stale"] = self.stale
        out["loud"] = self.loud
        return out


def _ran(view: Enforcer) -> str:
    if view.state == "unknown":
        return "unknown"
    if view.last_run is None:
        return "not yet (first check within one interval)"
    good = "" if view.last_good == view.last_run else \
        f" (last good run {view.last_good or 'never'})"
    return f"{view.last_run}{good}"


def choose(enforcer: str | None, no_enforcer: bool) -> tuple[str, str]:
    """``--enforcer`` / ``--no-enforcer`` -> (choice, how it was chosen); bad input exits 2."""
    if enforcer is not None and enforcer not in CHOICES:
        raise UserError(f"invalid value for --enforcer: {enforcer!r}; allowed: "
                        f"{', '.join(CHOICES)}")
    if no_enforcer and enforcer not in (None, NONE):
        raise UserError(f"invalid arguments: --no-enforcer with --enforcer {enforcer}; "
                        "allowed: one of them")
    if no_enforcer or enforcer == NONE:
        return NONE, "--no-enforcer"
    if enforcer == SCHEDULE:
        return SCHEDULE, "--enforcer schedule"
    return GUARD, "default"


# --- judging a run record ---------------------------------------------------------------

def _at(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def run_state(beat: dict | None, now: datetime, interval_s: float | None,
              since: datetime | None = None) -> tuple[str, str]:
    """(state, problem) of an enforcer from its own heartbeat: ``ok`` when its last good run
    is within two intervals of ``now``; ``not yet`` when it never ran (and was deployed less
    than two intervals ago, when that is known); otherwise ``stale`` or ``failing``."""
    interval = float((beat or {}).get("interval_s") or interval_s or 0) or None
    limit = timedelta(seconds=2 * interval) if interval else None
    span = f"two intervals ({2 * interval / 60:g} min)" if interval else "two intervals"
    last, good = _at((beat or {}).get("last_run")), _at((beat or {}).get("last_good"))
    if last is None:
        if since is not None and limit is not None and now - since > limit:
            return "stale", (f"enforcer stale: it never ran since it was deployed at "
                             f"{_iso(since)}, more than {span} ago")
        return "not yet", ""
    if limit is None or (good is not None and now - good <= limit):
        return "ok", ""
    if now - last <= limit:
        return "failing", (f"enforcer failing: it last ran at {_iso(last)} but its last good "
                           f"run was {_iso(good) if good else 'never'}, more than {span} ago")
    return "stale", (f"enforcer stale: it last ran at {_iso(last)}, more than {span} ago")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def _judged(view: Enforcer, beat: dict | None, now: datetime, hint: str) -> Enforcer:
    interval_s = view.every_minutes * 60 if view.every_minutes else None
    state, problem = run_state(beat, now, interval_s, _at(view.deployed_at))
    last = _at((beat or {}).get("last_run"))
    good = _at((beat or {}).get("last_good"))
    warning = (f"{problem}: nothing is acting on budgets or TTLs; {hint}" if problem else
               view.warning)
    return replace(view, state=state, warning=warning,
                   last_run=_iso(last) if last else None, last_good=_iso(good) if good else None)


# --- what the enforcers and `up` wrote --------------------------------------------------

@dataclass
class Sources:
    """What the enforcers and ``up`` wrote, and the clock: read once per command."""

    records: Sequence[dict]  # the audit log, oldest first
    now: datetime
    # (table, region) -> the guard's heartbeat (cloud/guard_store.py's last_beat); may raise
    guard_beat: Callable[[str, str], dict | None]
    # () -> the scheduled check's heartbeat row (cloud/ledger.py's last_beat("schedule"))
    schedule_beat: Callable[[], dict | None]
    _beats: dict = field(default_factory=dict)

    def guard(self, table: str, region: str) -> tuple[dict | None, str]:
        key = (table, region)
        if key not in self._beats:
            try:
                self._beats[key] = (self.guard_beat(table, region), "")
            except Exception as exc:  # noqa: BLE001 - unread is reported, never ok
                self._beats[key] = (None, _why(exc))
        return self._beats[key]


def _why(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]


def local_sources(now: datetime | None = None) -> Sources:
    """This machine's audit log and ledger, and the guard's table through boto3; read only
    (nothing is created). A state dir that does not exist leaves nothing recorded (then
    nothing is shown as covering)."""
    from dsinfra.cloud.ledger import SqliteLedger
    from dsinfra.cloud.audit import AuditLog
    from dsinfra.paths import state_dir_path

    root = state_dir_path()
    root = root if root.is_dir() else None

    def schedule_beat() -> dict | None:
        if root is None or not (root / "ledger.sqlite3").exists():
            return None
        ledger = SqliteLedger(root / "ledger.sqlite3")
        try:
            return ledger.last_beat("schedule")
        finally:
            ledger.close()

    records = AuditLog(root / "audit.jsonl").records()[0] if root is not None else []
    return Sources(records, now or utcnow(), _read_guard_beat, schedule_beat)


def _read_guard_beat(table: str, region: str) -> dict | None:
    from dsinfra.cloud.guard_store import DynamoLedger

    return DynamoLedger(table, region).last_beat()


def guard_record(records: Sequence[dict]) -> dict | None:
    """Where the guard is, as ``up`` or ``guard deploy`` last recorded it; None when it was
    never deployed from here or was destroyed since."""
    for record in reversed(records):
        kind = record.get("kind")
        if kind == "guard.destroy":
            return None
        if kind == "guard.deploy":
            return record.get("guard") or None
        if kind == "up.enforcer" and (record.get("enforcer") or {}).get("kind") == GUARD \
                and (record.get("enforcer") or {}).get("table"):
            return record["enforcer"]
    return None


def stack_choice(stack: str, records: Sequence[dict]) -> dict | None:
    """The enforcer ``stack`` was last brought up with (``up.enforcer``), or None."""
    for record in reversed(records):
        if record.get("kind") == "up.enforcer" and record.get("stack") == stack:
            return {**(record.get("enforcer") or {}), "at": record.get("at")}
    return None


def guard_view(region: str, src: Sources, *, chosen_by: str = "default") -> Enforcer:
    """The guard as recorded, judged by its own heartbeat."""
    where = guard_record(src.records)
    if where is None:
        return Enforcer(GUARD, "", (), None, None, None,
                        f"`dsinfra up` deploys it in {region} before creating anything",
                        state="not deployed", chosen_by=chosen_by)
    regions = tuple(str(r) for r in where.get("regions") or ())
    view = Enforcer(GUARD, str(where.get("name") or DEFAULT_GUARD_STACK), regions,
                    where.get("every_minutes"), where.get("deployed_at"), None,
                    state="", table=where.get("table"),
                    home_region=where.get("home_region") or (regions[0] if regions else None),
                    enforce=where.get("enforce", True), account=where.get("account"),
                    chosen_by=chosen_by)
    return judge_guard(view, region, src)


def judge_guard(view: Enforcer, region: str, src: Sources) -> Enforcer:
    if not view.table or not view.home_region:
        return replace(view, state="unknown", warning="where the guard keeps its heartbeat "
                       "is not recorded; `dsinfra up` or `dsinfra guard deploy` records it")
    beat, error = src.guard(view.table, view.home_region)
    if error:
        return replace(view, state="unknown", warning=(
            f"could not read when the guard last ran ({error}): treat budgets and TTLs as "
            f"unenforced until `dsinfra status` reads it; {GUARD_LOG_HINT}"))
    facts = (beat or {}).get("facts") or {}
    judged = _judged(replace(view, account=facts.get("account") or view.account,
                             enforce=facts.get("enforce", view.enforce)),
                     beat, src.now, GUARD_LOG_HINT)
    if region not in view.regions:
        return replace(judged, state="not covered", warning=(
            f"the guard checks {', '.join(view.regions) or 'no region'}, not {region}; "
            "`dsinfra up` adds the stack's region"))
    if judged.enforce is False:
        return replace(judged, state="not covered", warning=(
            "the guard runs as a dry run (deployed without --enforce); `dsinfra up` "
            "redeploys it enforcing"))
    return judged


def schedule_view(region: str, src: Sources, *, account: str | None = None,
                  chosen_by: str = "--enforcer schedule") -> Enforcer:
    """The local scheduled check, judged by the ``schedule`` row its own runs write."""
    beat = src.schedule_beat()
    facts = (beat or {}).get("facts") or {}
    interval_s = (beat or {}).get("interval_s")
    view = Enforcer(SCHEDULE, SCHEDULE_NAME, tuple(facts.get("regions") or ()),
                    int(interval_s // 60) if interval_s else None, None, None,
                    account=facts.get("account"), enforce=facts.get("enforce"),
                    chosen_by=chosen_by)
    if beat is None:
        return replace(view, state="not yet", warning=(
            "no run of an installed schedule is recorded on this machine; run `dsinfra "
            "schedule install --enforce` (its first run is recorded)"))
    judged = _judged(view, beat, src.now, SCHEDULE_LOG_HINT)
    if judged.stale:
        return judged
    problem = ""
    if not facts.get("enforce"):
        problem = ("the installed schedule is a dry run (installed without --enforce); "
                   "run `dsinfra schedule install --enforce`")
    elif region not in view.regions:
        problem = (f"the installed schedule checks {', '.join(view.regions) or 'no region'}, "
                   f"not {region}; set DSINFRA_REGIONS to include {region} and run `dsinfra "
                   "schedule install --enforce` again")
    elif account is not None and facts.get("account") != account:
        problem = (f"the installed schedule checks account {facts.get('account') or 'unknown'}"
                   f", not {account} (these credentials); reinstall it with this account's "
                   "credentials")
    return replace(judged, state="not covered", warning=problem) if problem else judged


def none_view(region: str, *, chosen_by: str = "--no-enforcer") -> Enforcer:
    return Enforcer(NONE, "", (region,), None, None, None, NO_ENFORCER_WARNING, state=NONE,
                    chosen_by=chosen_by)


def for_plan(stack: str, region: str, choice: str, chosen_by: str, src: Sources) -> Enforcer:
    """What ``up`` would rely on for ``stack`` with the same flags, and when it last ran; a
    stack now running with no enforcer (last ``up`` with ``--no-enforcer``) is warned too."""
    if choice == NONE:
        return none_view(region, chosen_by=chosen_by)
    view = (schedule_view(region, src, chosen_by=chosen_by) if choice == SCHEDULE else
            guard_view(region, src, chosen_by=chosen_by))
    was = stack_choice(stack, src.records)
    if was and was.get("kind") == NONE and not view.covers:
        return replace(view, warning=f"{_running_bare(stack, was)}; {view.warning}",
                       no_enforcer_since=was.get("at"))
    return view


def for_status(stack: str, region: str, src: Sources) -> Enforcer:
    """What covers a running stack now: the guard when it covers the stack's region, else the
    installed schedule when its runs do; else none, warned (with the ``--no-enforcer`` choice
    read back from the audit log when that is how the stack was brought up)."""
    guard = guard_view(region, src)
    if guard.state not in ("not deployed", "not covered"):
        return guard
    schedule = schedule_view(region, src, chosen_by="installed")
    if schedule.last_run is not None and schedule.state != "not covered":
        return schedule  # a schedule that ran here, ok or stale (then warned)
    was = stack_choice(stack, src.records)
    if was and was.get("kind") == NONE:
        return replace(none_view(region, chosen_by="--no-enforcer"),
                       warning=_running_bare(stack, was), no_enforcer_since=was.get("at"))
    return Enforcer(NONE, "", (region,), None, None, None,
                    f"no enforcer covers {region} from this machine's records: nothing acts "
                    f"on this stack's budget or TTL; run `dsinfra guard deploy --enforce "
                    f"--region {region}` or `dsinfra up {stack}`", state="not found",
                    chosen_by="not found")


def _running_bare(stack: str, was: dict) -> str:
    at = _at(was.get("at"))
    return (f"no enforcer: stack {stack} was brought up with --no-enforcer at "
            f"{_iso(at) if at else '?'} and no enforcer covers it since")


def require_schedule(view: Enforcer) -> Enforcer:
    """``up --enforcer schedule``: the schedule must have enforced within two intervals,
    covering the stack's region and account; otherwise nothing is created (exit 2)."""
    if view.state == "ok":
        return view
    why = view.warning or f"its state is {view.state}"
    raise UserError(f"--enforcer schedule: {why}; nothing was created (or leave out "
                    "--enforcer schedule to deploy the in-account guard)")


# --- what `up` does ---------------------------------------------------------------------

def _existing(engine: Any, stack: str) -> dict[str, Any]:
    try:
        return dict(engine.outputs(stack) or {})
    except Exception:  # noqa: BLE001 - a guard stack that does not exist yet has no outputs
        return {}


def ensure_guard(region: str, engine: Any, *, stack: str = DEFAULT_GUARD_STACK,
                 now: datetime | None = None, on_event=None) -> Enforcer:
    """Deploy or update the enforcing guard so that it covers ``region`` as well as every
    region it already covers, at the interval it already runs (15 min for a new one)."""
    existing = _existing(engine, stack)
    regions = [r for r in existing.get("regions") or [] if isinstance(r, str)]
    if region not in regions:
        regions.append(region)
    every = int(existing.get("every_minutes") or DEFAULT_EVERY_MINUTES)
    outputs = deploy_guard(engine, stack, regions, every, enforce=True, on_event=on_event)
    return guard_deployed(outputs, regions, every, now or utcnow(), stack)


def guard_deployed(outputs: dict[str, Any], regions: Sequence[str], every: int,
                   now: datetime, stack: str = DEFAULT_GUARD_STACK,
                   enforce: bool = True) -> Enforcer:
    """The guard as just deployed: what ``up.enforcer`` / ``guard.deploy`` record."""
    return Enforcer(GUARD, str(outputs.get("function_name") or stack), tuple(regions), every,
                    _iso(now), None, state="not yet", table=outputs.get("table_name"),
                    home_region=regions[0] if regions else None, enforce=enforce,
                    chosen_by="default")


def no_enforcer(stack: str, region: str, *, audit: Callable[..., Any],
                notify: Callable[[str, str], Any] | None = None) -> Enforcer:
    """``--no-enforcer``: the warning, audited and sent as a notice (never silent)."""
    audit("enforcer.none", stack=stack, region=region, warning=NO_ENFORCER_WARNING)
    notify = notify or _notify
    notify(f"dsinfra: {stack} has no enforcer", f"{stack} ({region}): {NO_ENFORCER_WARNING}")
    return none_view(region)


def warn_stale(stack: str, view: Enforcer, *, audit: Callable[..., Any],
               notify: Callable[[str, str], Any] | None = None) -> None:
    """An enforcer ``up`` relies on that has not run well for two intervals: audited and sent
    as a notice as well as printed."""
    if not (view.stale or view.state == "unknown"):
        return
    audit("enforcer.stale", stack=stack, enforcer=view.to_dict())
    (notify or _notify)(f"dsinfra: the enforcer of {stack} is {view.state}",
                        f"{stack}: {view.warning}")


def _notify(subject: str, text: str) -> None:
    """The existing notify path (webhook / SNS from the environment), when one is set."""
    from dsinfra.cloud.notify import Notifier

    notifier = Notifier.from_env()
    if notifier.configured:
        notifier.send(subject, text)
