"""``dsinfra schedule install|show|remove``: run the cost check on a timer."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

schedule_app = typer.Typer(help="Run `dsinfra cost check` on a schedule (systemd or cron).",
                           **TYPER_OPTIONS)
app.add_typer(schedule_app, name="schedule")


def _unit_dir(system: bool) -> Path:
    if os.environ.get("DSINFRA_SYSTEMD_DIR"):
        return Path(os.environ["DSINFRA_SYSTEMD_DIR"])
    return Path("/etc/systemd/system") if system else \
        Path.home() / ".config" / "systemd" / "user"


def _env_file() -> str:
    return os.environ.get("DSINFRA_ENV_FILE") or str(Path.home() / ".config" / "dsinfra" / "env")


def _crontab_read() -> str:
    target = os.environ.get("DSINFRA_CRONTAB_FILE")
    if target:
        return Path(target).read_text() if Path(target).exists() else ""
    if not shutil.which("crontab"):
        from dsinfra.errors import UserError

        raise UserError("crontab is not installed", hint="Use --user or --system (systemd).")
    out = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def _crontab_write(text: str) -> None:
    target = os.environ.get("DSINFRA_CRONTAB_FILE")
    if target:
        Path(target).write_text(text)
        return
    subprocess.run(["crontab", "-"], input=text, text=True, check=True)


def _systemctl(system: bool, *args: str) -> subprocess.CompletedProcess | None:
    """Run systemctl; None when the unit dir is redirected (tests) or there is no systemd."""
    if os.environ.get("DSINFRA_SYSTEMD_DIR") or not shutil.which("systemctl"):
        return None
    return subprocess.run(["systemctl", *([] if system else ["--user"]), *args],
                          capture_output=True, text=True)


def _must(result: subprocess.CompletedProcess | None, what: str) -> None:
    if result is not None and result.returncode != 0:
        from dsinfra.errors import CloudError

        raise CloudError(f"{what} failed (exit {result.returncode}): "
                         f"{(result.stderr or result.stdout).strip()[:300]}",
                         hint="Nothing runs on schedule until this is fixed.")


def _check_command(enforce: bool) -> list[str]:
    return [sys.executable, "-m", "dsinfra.cli", "cost", "check", "--all", "--json",
            *(["--enforce"] if enforce else [])]


# What the scheduled check needs from the installing shell (cron and systemd start it with
# an almost empty environment).
PASSED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
              "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "DSINFRA_REGIONS",
              "DSINFRA_WEBHOOK_URL", "DSINFRA_SNS_TOPIC_ARN", "DSINFRA_PROJECT_DIR")


def _environment(every: str) -> dict[str, str]:
    from dsinfra.cloud.notify import Notifier
    from dsinfra.paths import state_dir
    from dsinfra.schedule import interval_s

    Notifier.from_env()  # a bad notification URL stops here, not in every scheduled run
    if os.environ.get("AWS_SESSION_TOKEN"):
        from dsinfra.errors import UserError

        raise UserError("invalid environment for a schedule: AWS_SESSION_TOKEN is set "
                        "(temporary credentials expire and every later run would fail); "
                        "allowed: a profile (AWS_PROFILE), long-term keys or an instance role")
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env["DSINFRA_STATE_DIR"] = str(state_dir())
    env["DSINFRA_CHECK_INTERVAL_S"] = str(interval_s(every))
    env["DSINFRA_CHECK_DEADLINE_S"] = str(max(30, interval_s(every) // 3))
    return env


def _write_env_file(env: dict[str, str]) -> str:
    from dsinfra.schedule import env_file_text

    path = Path(_env_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the webhook
    with os.fdopen(fd, "w") as out:
        out.write(env_file_text(env))
    return str(path)


def _linger() -> str | None:
    """Keep a --user timer running after logout; a warning when that cannot be done."""
    import getpass

    user = getpass.getuser()
    if not shutil.which("loginctl"):
        return "loginctl not found: the --user timer stops when you log out"
    done = subprocess.run(["loginctl", "enable-linger", user], capture_output=True, text=True)
    if done.returncode != 0:
        return (f"could not enable lingering for {user} ({done.stderr.strip()[:120]}): the "
                f"--user timer stops when you log out; run `sudo loginctl enable-linger {user}`"
                " or install with --system")
    return None


def _verify(command_line: list[str], systemd: bool, system: bool, env: dict[str, str],
            log_hint: str) -> None:
    """Start the check once the way the scheduler will, and read its result."""
    from dsinfra.errors import CloudError

    from dsinfra.schedule import UNIT_NAME

    started = _systemctl(system, "start", f"{UNIT_NAME}.service") if systemd else None
    if started is None:  # cron, or a redirected unit dir: run the same command ourselves
        try:
            started = subprocess.run(command_line, env={"PATH": os.environ.get("PATH", ""),
                                                        "HOME": str(Path.home()), **env},
                                     capture_output=True, text=True,
                                     timeout=int(env["DSINFRA_CHECK_INTERVAL_S"]))
        except subprocess.TimeoutExpired:
            raise CloudError("the schedule is installed, but its first run did not finish "
                             "within one interval", hint=f"See {log_hint}.") from None
    if started.returncode != 0:
        raise CloudError(f"the schedule is installed, but its first run failed (exit "
                         f"{started.returncode})", hint=f"See {log_hint}; `dsinfra cost check` "
                         "run by hand shows the same error.")


@schedule_app.command("install")
def install_command(
    every: str = typer.Option("15m", "--every", help="Interval: 1m-59m or 1h-23h."),
    enforce: bool = typer.Option(False, "--enforce", help="Let the scheduled check act "
                                 "(without it the schedule only meters and reports)."),
    user: bool = typer.Option(False, "--user", help="systemd user timer (the default)."),
    system: bool = typer.Option(False, "--system", help="systemd system timer (root)."),
    cron: bool = typer.Option(False, "--cron", help="A crontab entry instead of systemd."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Run the check once now "
                                "and fail unless it succeeds (the default)."),
) -> None:
    """Write (and load) a systemd timer + service, or a crontab entry, for the cost check;
    write its environment file; run it once and report the result."""
    from dsinfra.cli.output import note
    from dsinfra.errors import UserError
    from dsinfra.paths import state_dir
    from dsinfra.schedule import UNIT_NAME, cron_command, cron_line, systemd_units, without_entry

    if sum((user, system, cron)) > 1:
        raise UserError("invalid arguments: choose one of --user, --system, --cron")
    command, env = _check_command(enforce), _environment(every)
    env_file = _write_env_file(env)
    log_file = str(state_dir() / "cost-check.log")
    if cron:
        line = cron_line(every, command, env_file, log_file)
        _crontab_write(without_entry(_crontab_read()) + line + "\n")
        note(f"crontab entry installed (output appended to {log_file})")
        log_hint = log_file
        run_once = ["sh", "-c", cron_command(command, env_file, log_file)]
    else:
        directory = _unit_dir(system)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in systemd_units(every, command, env_file).items():
            (directory / name).write_text(text)
        _must(_systemctl(system, "daemon-reload"), "systemctl daemon-reload")
        _must(_systemctl(system, "enable", "--now", f"{UNIT_NAME}.timer"),
              f"systemctl enable --now {UNIT_NAME}.timer")
        note(f"systemd timer {UNIT_NAME}.timer installed in {directory} (every {every}); "
             f"output goes to the journal")
        log_hint = f"journalctl {'' if system else '--user '}-u {UNIT_NAME}.service"
        run_once = ["sh", "-c", f"set -a; . {shlex.quote(env_file)}; set +a; "
                    f"exec {shlex.join(command)}"]
        if not system and not os.environ.get("DSINFRA_SYSTEMD_DIR"):
            warning = _linger()
            if warning:
                note(f"warning: {warning}")
    note(f"environment (state dir, profile, regions, notification) in {env_file}")
    if verify:
        _verify(run_once, not cron, system, env, log_hint)
        note("first run: ok")
    if not enforce:
        note("the scheduled check is a dry run: reinstall with --enforce to let it act")


@schedule_app.command("show")
def show_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")
                 ) -> None:
    """What is installed: the unit files and/or the crontab entry."""
    from dsinfra.schedule import CRON_MARKER, UNIT_NAME

    found: dict = {"systemd": {}, "cron": None}
    for system in (False, True):
        directory = _unit_dir(system)
        for suffix in ("service", "timer"):
            path = directory / f"{UNIT_NAME}.{suffix}"
            if path.exists():
                found["systemd"][str(path)] = path.read_text()
    try:
        lines = [l for l in _crontab_read().splitlines() if CRON_MARKER in l]
        found["cron"] = lines[0] if lines else None
    except Exception:  # noqa: BLE001 - no crontab on this machine is "no entry"
        found["cron"] = None
    from dsinfra.ops.enforcer import local_sources

    # the scheduled check's own last run (ledger): what `up --enforcer schedule` relies on
    found["last_run"] = local_sources().schedule_beat()
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(found)
        return
    if not found["systemd"] and not found["cron"]:
        typer.echo("no dsinfra schedule installed")
    beat = found["last_run"]
    typer.echo("last scheduled run: " + (
        f"{beat['last_run']} (last good {beat['last_good'] or 'never'}, "
        f"{'enforcing' if beat['facts'].get('enforce') else 'dry run'}, regions "
        f"{', '.join(beat['facts'].get('regions') or []) or '-'})" if beat else "none recorded"))
    for path, text in found["systemd"].items():
        typer.echo(f"# {path}\n{text}")
    if found["cron"]:
        typer.echo(f"# crontab\n{found['cron']}")


@schedule_app.command("remove")
def remove_command() -> None:
    """Remove the timer/service and the crontab entry (whichever exist)."""
    from dsinfra.cli.output import note
    from dsinfra.schedule import CRON_MARKER, UNIT_NAME, without_entry

    for system in (False, True):
        directory = _unit_dir(system)
        if (directory / f"{UNIT_NAME}.timer").exists():
            _systemctl(system, "disable", "--now", f"{UNIT_NAME}.timer")
        for suffix in ("service", "timer"):
            path = directory / f"{UNIT_NAME}.{suffix}"
            if path.exists():
                path.unlink()
                note(f"removed {path}")
    try:
        current = _crontab_read()
    except Exception:  # noqa: BLE001
        current = ""
    if CRON_MARKER in current:
        _crontab_write(without_entry(current))
        note("removed the crontab entry")
