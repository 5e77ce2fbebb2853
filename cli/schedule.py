"""``dsinfra schedule install|show|remove``: run the cost check on a timer."""

from __future__ import annotations

import os
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


def _systemctl(system: bool, *args: str) -> None:
    if os.environ.get("DSINFRA_SYSTEMD_DIR") or not shutil.which("systemctl"):
        return  # a redirected unit dir is not what systemd reads; nothing to load
    subprocess.run(["systemctl", *([] if system else ["--user"]), *args], check=False)


def _check_command(enforce: bool) -> list[str]:
    return [sys.executable, "-m", "dsinfra.cli", "cost", "check", "--all", "--json",
            *(["--enforce"] if enforce else [])]


@schedule_app.command("install")
def install_command(
    every: str = typer.Option("15m", "--every", help="Interval: 1m-59m or 1h-23h."),
    enforce: bool = typer.Option(False, "--enforce", help="Let the scheduled check act "
                                 "(without it the schedule only meters and reports)."),
    user: bool = typer.Option(False, "--user", help="systemd user timer (the default)."),
    system: bool = typer.Option(False, "--system", help="systemd system timer (root)."),
    cron: bool = typer.Option(False, "--cron", help="A crontab entry instead of systemd."),
) -> None:
    """Write (and load) a systemd timer + service, or a crontab entry, for the cost check."""
    from dsinfra.cli.output import note
    from dsinfra.errors import UserError
    from dsinfra.schedule import UNIT_NAME, cron_line, systemd_units, without_entry

    if sum((user, system, cron)) > 1:
        raise UserError("invalid arguments: choose one of --user, --system, --cron")
    command = _check_command(enforce)
    if cron:
        line = cron_line(every, command, _env_file())
        _crontab_write(without_entry(_crontab_read()) + line + "\n")
        note(f"crontab entry installed: {line}")
    else:
        directory = _unit_dir(system)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in systemd_units(every, command, _env_file()).items():
            (directory / name).write_text(text)
        _systemctl(system, "daemon-reload")
        _systemctl(system, "enable", "--now", f"{UNIT_NAME}.timer")
        note(f"systemd timer {UNIT_NAME}.timer installed in {directory} (every {every})")
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
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(found)
        return
    if not found["systemd"] and not found["cron"]:
        typer.echo("no dsinfra schedule installed")
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
