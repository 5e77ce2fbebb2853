"""``dsinfra up STACK``: from nothing to a healthy endpoint, with the engine's events on screen."""

from __future__ import annotations

from typing import Any, Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


def make_engine(project_dir):
    """The Automation API engine for this project (tests replace this factory)."""
    from dsinfra.infra.automation import PulumiEngine

    return PulumiEngine(project_dir)


@app.command("up")
def up_command(
    stack: str = typer.Argument(..., help="Stack to bring up (stacks/Pulumi.<stack>.yaml)."),
    force: bool = typer.Option(False, "--force", help="Deploy even if the estimate is over "
                               "the budget."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    ssh_key: Optional[str] = typer.Option(None, "--ssh-key", help="Private key for bootstrap "
                                          "SSH (default: your SSH agent / ~/.ssh)."),
    trust_on_first_use: bool = typer.Option(
        False, "--trust-on-first-use", help="Accept host keys on first contact (new instances "
        "only; verified ever after)."),
    enforcer: Optional[str] = typer.Option(
        None, "--enforcer", metavar="guard|schedule|none", help="What enforces the budget "
        "and TTL: guard (default: deploy or update the in-account guard first), schedule "
        "(the installed `schedule install --enforce`, accepted only if it ran within two "
        "intervals) or none."),
    no_enforcer: bool = typer.Option(
        False, "--no-enforcer", help="Do not deploy or update the in-account guard first: "
        "nothing will act on the budget or TTL (warned, audited and notified)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Validate, check fit and preflight, deploy or update the budget guard, pulumi up (retrying other zones when AWS has no
    capacity), bootstrap, wait for health, then print the endpoint and a curl example."""
    from dsinfra.errors import UserError
    from dsinfra.ops.enforcer import choose
    from dsinfra.ops.up import (CapacityExhausted, NothingCreated, UpOptions, UpPorts,
                                bring_up)
    from dsinfra.stackfiles import find_project_dir, load_stack

    choice, _ = choose(enforcer, no_enforcer)
    project = find_project_dir()
    config = load_stack(stack, project)
    if choice == "schedule":  # refuse a schedule that cannot vouch before anything else
        _verified_schedule(config)
    if not yes:  # refuse now, before any AWS call, when the question could not be asked
        _require_terminal(config)
    options = UpOptions(force=force, ssh_key_path=ssh_key,
                        trust_on_first_use=trust_on_first_use)
    engine = make_engine(project)
    with EngineProgress(quiet=as_json) as progress:
        try:
            result = bring_up(config, engine, options=options, ports=UpPorts(
                on_event=progress.on_event, on_phase=progress.on_phase, audit=_audit_sink(),
                confirm=None if yes else progress.ask, enforcer=_enforcer(choice)))
        except NothingCreated as exc:
            progress.stop()
            from dsinfra.cli.output import note

            note(f"{exc}")
            raise typer.Exit(0) from None
        except CapacityExhausted as exc:
            progress.stop()
            _print_attempts(exc.attempts, as_json, stack)
            raise
        except UserError as exc:
            progress.stop()
            report = getattr(exc, "report", None)
            if report is not None and not as_json:
                from dsinfra.cli.doctor import print_report

                print_report(report, stderr=True)
            raise
    _print_result(config, result, as_json)


def _enforcer(choice: str):
    """By default the in-account guard, deployed or updated through the guard's engine
    (cli/guard.py's factory, which tests replace) and then judged by its own heartbeat;
    ``--enforcer schedule``: the installed schedule, verified again; ``--no-enforcer``: a
    warning everywhere (ops/enforcer.py)."""

    def run(config):
        from dsinfra.cli.output import note
        from dsinfra.ops import enforcer as E

        audit = _audit_sink() or (lambda *a, **k: None)
        if choice == E.NONE:
            enforced = E.no_enforcer(config.stack, config.region, audit=audit)
            note(f"warning: {enforced.warning}")
            return enforced
        if choice == E.SCHEDULE:
            return _verified_schedule(config)
        from dsinfra.cli.guard import make_engine as guard_engine

        from dataclasses import replace

        from dsinfra.cloud.aws import caller_account

        deployed = E.ensure_guard(config.region, guard_engine(), now=E.utcnow())
        # deployed with these credentials: their account, until its own runs record one
        deployed = replace(deployed, account=caller_account(config.region))
        enforced = E.judge_guard(deployed, config.region, E.local_sources())
        if enforced.warning:
            note(f"warning: {enforced.warning}")
            E.warn_stale(config.stack, enforced, audit=audit)
        return enforced

    return run


def _verified_schedule(config):
    """The installed schedule as its own last run recorded it; exit 2 unless it enforced this
    region and account within two intervals."""
    from dsinfra.cloud.aws import caller_account
    from dsinfra.errors import CloudError
    from dsinfra.ops import enforcer as E

    account = caller_account(config.region)
    if account is None:
        raise CloudError("--enforcer schedule: could not read this account (STS "
                         "GetCallerIdentity) to check the schedule covers it; nothing was "
                         "created")
    return E.require_schedule(E.schedule_view(config.region, E.local_sources(),
                                              account=account))


def _audit_sink():
    """The budgets area's audit log (``dsinfra cost audit`` reads it), when installed."""
    try:
        from dsinfra.ops.local import audit_log
    except ImportError:
        return None
    return audit_log().append


def _require_terminal(config) -> None:
    from dsinfra.cli.confirm import stdin_is_terminal
    from dsinfra.errors import UserError

    what = f"{config.resolved_node_count}x {config.resolved_instance_type} in {config.region}"
    if not stdin_is_terminal():
        raise UserError(f"`dsinfra up {config.stack}` creates {what} and needs confirmation; "
                        "nothing was created", hint="Pass --yes to confirm without a terminal.")


class EngineProgress:
    """A rich live display fed by the engine's event dicts and the phases of ``bring_up``."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from dsinfra.cli.output import console

        self.quiet = quiet
        self.started = 0
        self.done = 0
        self.failed: list[str] = []
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  TimeElapsedColumn(), console=console(stderr=True),
                                  disable=quiet, transient=False)
        self._task = self._progress.add_task("starting", total=None)

    def __enter__(self) -> "EngineProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._progress.stop()

    def ask(self, summary) -> bool:
        """The confirmation after preflight (price, budget, TTL), with the live display paused
        so the question is not drawn over."""
        self._progress.stop()
        answer = typer.confirm(summary.line(), default=False, err=True)
        if answer:
            self._progress.start()
        return answer

    def on_phase(self, phase: str, message: str) -> None:
        self._progress.update(self._task, description=f"[bold]{phase}[/bold] {message}")
        if not self.quiet:
            self._progress.console.print(f"{phase}: {message}")

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        name = str(event.get("urn", "")).split("::")[-1]
        if kind == "resource_pre_event":
            self.started += 1
            op = event.get("op", "").replace("OpType.", "").lower()
            description = f"{op} {event.get('type', '')} {name}"
        elif kind == "res_outputs_event":
            self.done += 1
            description = f"done {name}"
        elif kind == "res_op_failed_event":
            self.failed.append(name)
            description = f"[red]failed[/red] {name}"
        elif kind == "diagnostic_event" and event.get("severity") == "error":
            description = f"[red]{event.get('message', '').strip()[:200]}[/red]"
            self._progress.console.print(description)
        else:
            return
        self._progress.update(self._task, description=f"pulumi up: {self.done}/{self.started} "
                              f"resources done - {description}")


def _print_attempts(attempts, as_json: bool = False, stack: str = "") -> None:
    """Every zone, alternative and region tried, with what AWS said and what the sweep found."""
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"stack": stack, "attempts": attempts})
        return
    from dsinfra.cli.output import Col, console, print_table

    rows = [[f"{attempt.nodes}x {attempt.instance_type}" + (" spot" if attempt.spot else ""),
             attempt.availability_zone or attempt.region, attempt.outcome,
             "; ".join(x for x in (attempt.message, attempt.cleanup) if x)]
            for attempt in attempts]
    print_table([Col("option"), Col("where"), Col("outcome"),
                 Col("AWS said / cleanup", wraps=True)], rows, title="attempts",
                out=console(stderr=True))


def _print_result(config, result, as_json: bool) -> None:
    from dsinfra.ops.up import api_key_instructions, curl_example, port_forward_command

    key_command = api_key_instructions(config.stack, result.outputs)
    curl = curl_example(config, result.outputs)
    forward = port_forward_command(config)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"stack": config.stack, "endpoint": result.outputs.endpoint,
                    "healthy": result.healthy, "health_note": result.health_note,
                    "expires_at": result.expires_at, "monthly_usd": result.monthly_usd,
                    "enforcer": result.enforcer.to_dict() if result.enforcer else None,
                    "attempts": result.attempts, "nodes": result.outputs.nodes,
                    "instance_type": result.instance_type, "node_count": result.node_count,
                    "region": result.region, "parallelism": result.parallelism,
                    "notes": result.notes,
                    "replicas": [r.to_dict() for r in result.replicas],
                    "api_key_command": key_command, "port_forward": forward, "curl": curl})
        return
    from dsinfra.cli.output import console

    out = console()
    if len(result.attempts) > 1:
        _print_attempts(result.attempts)
    out.print(f"[bold green]{config.stack} is up[/bold green]: {len(result.outputs.nodes)}x "
              f"{result.instance_type or config.resolved_instance_type} in {result.region}, "
              f"{result.parallelism}, about ${result.monthly_usd:,.0f}/month")
    for note in result.notes:
        out.print(f"note: {note}", soft_wrap=True)
    out.print(f"endpoint: {result.outputs.endpoint}" + (
        " (closed to every address: apiAllowedCidrs is empty)" if forward else ""),
        soft_wrap=True)
    out.print(f"health:   {result.health_note}", soft_wrap=True)
    for replica in result.replicas:  # a replicas stack: each engine's own answer
        out.print(f"replica:  {replica.id} ({replica.address}) {replica.status}",
                  soft_wrap=True, markup=False)
    if result.expires_at:
        out.print(f"expires:  {result.expires_at.isoformat()} (budget action: "
                  f"{config.budget.on_exceed})")
    if result.enforcer is not None:
        out.print(result.enforcer.line(), soft_wrap=True, markup=False)
        if result.enforcer.loud and result.enforcer.kind != "none":
            out.print(f"warning: {result.enforcer.warning}", soft_wrap=True, markup=False)
    out.print(f"API key:  export DSINFRA_API_KEY=$({key_command})", soft_wrap=True,
              markup=False)
    if forward:
        out.print(f"reach it: {forward}  (in another terminal; through the stack's EC2 "
                  "Instance Connect Endpoint)", soft_wrap=True, markup=False)
    out.print("try it:", soft_wrap=True)
    out.print(curl, soft_wrap=True, markup=False)
    out.print(f"stop spending: dsinfra down {config.stack}")
