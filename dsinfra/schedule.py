"""What ``dsinfra schedule install`` writes: a systemd service + timer, or a crontab entry.
Pure text rendering; cli/schedule.py writes the files and asks systemd/cron to load them."""

from __future__ import annotations

import re
import shlex

from dsinfra.errors import UserError

UNIT_NAME = "dsinfra-cost-check"
CRON_MARKER = "# dsinfra-cost-check"
_EVERY = re.compile(r"([0-9]{1,6})(m|h)", re.ASCII)


def parse_every(every: str) -> tuple[int, str]:
    """``15m`` -> (15, "m"). Minutes 1-59 or hours 1-23: what both cron and systemd can say."""
    match = _EVERY.fullmatch(every.strip())
    value, unit = (int(match.group(1)), match.group(2)) if match else (0, "")
    if not match or (unit == "m" and not 1 <= value <= 59) or (unit == "h" and not 1 <= value <= 23):
        raise UserError(f"invalid value for --every: {every!r}; allowed: minutes 1m-59m or "
                        "hours 1h-23h, e.g. 15m")
    return value, unit


_MINUTES = re.compile(r"([0-9]{1,6})(m|h|d)?")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}


def every_minutes(every: str, *, key: str = "--every", most: int = 1440) -> int:
    """``15m``, ``2h``, ``1d`` (a bare number: minutes, as before) -> minutes, 1 to ``most``:
    the one duration grammar the guard and ``schedule install`` share."""
    match = _MINUTES.fullmatch(str(every).strip())
    minutes = int(match.group(1)) * _UNIT_MINUTES[match.group(2) or "m"] if match else 0
    if not 1 <= minutes <= most:
        raise UserError(f"invalid value for {key}: {every!r}; allowed: a duration from 1m to "
                        f"{most // 60}h, e.g. 15m or 1h")
    return minutes


def interval_s(every: str) -> int:
    value, unit = parse_every(every)
    return value * (60 if unit == "m" else 3600)


def _plain(arg: str, what: str) -> str:
    if any(ord(c) < 32 or c == "\x7f" for c in arg):
        raise UserError(f"invalid value for {what}: {arg!r}; allowed: no control characters "
                        "(newlines, tabs) in a scheduled command or its environment")
    return arg


def systemd_exec(command: list[str]) -> str:
    """``ExecStart=`` text: shell-style quoting, then systemd's own specials doubled (``%``
    starts a specifier, ``$`` a variable; systemd.service(5), "Command lines")."""
    return shlex.join(_plain(a, "the command") for a in command).replace("%", "%%") \
        .replace("$", "$$")


def env_file_text(env: dict[str, str]) -> str:
    """``KEY='value'`` lines, read the same by systemd's ``EnvironmentFile=`` and by sh's
    ``.`` (cron): single quotes, so neither expands anything; a value holding a quote or a
    backslash is refused rather than mis-read."""
    lines = []
    for key, value in sorted(env.items()):
        _plain(value, key)
        if "'" in value or "\\" in value:
            raise UserError(f"invalid value for {key}: it contains a quote or a backslash; "
                            "allowed: values without ' or \\ (they reach a unit's env file)")
        lines.append(f"{key}='{value}'")
    return "# written by `dsinfra schedule install`; secrets live here, not in the unit\n" \
        + "\n".join(lines) + "\n"


def systemd_units(every: str, command: list[str], env_file: str) -> dict[str, str]:
    value, unit = parse_every(every)
    calendar = f"*:0/{value}" if unit == "m" else f"0/{value}:00"
    deadline_s = job_timeout_s(every)
    service = f"""[Unit]
Description=dsinfra cost check (budgets: meter spend, warn, stop or destroy)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
# Webhook URL, SNS topic, state dir, profile and regions; secrets stay out of this unit file.
EnvironmentFile={_plain(env_file, "the env file").replace("%", "%%")}
# A hung check is killed well inside its interval (the check's own deadline is shorter).
TimeoutStartSec={deadline_s}
StandardOutput=journal
StandardError=journal
ExecStart={systemd_exec(command)}
"""
    timer = f"""[Unit]
Description=Run the dsinfra cost check every {every}

[Timer]
OnCalendar={calendar}
Persistent=true
RandomizedDelaySec=30

[Install]
WantedBy=timers.target
"""
    return {f"{UNIT_NAME}.service": service, f"{UNIT_NAME}.timer": timer}


def cron_escape(text: str) -> str:
    """crontab(5): an unescaped ``%`` ends the command (the rest becomes its stdin)."""
    return _plain(text, "the cron command").replace("%", "\\%")


def cron_command(command: list[str], env_file: str, log_file: str,
                 timeout_s: int | None = None) -> str:
    """The shell command (before cron escaping) that loads the env file, runs the check and
    appends its output to ``log_file``; with ``timeout_s`` the check is killed after that
    long, as systemd's ``TimeoutStartSec`` does for the timer. cron has no timeout of its own,
    and coreutils' ``timeout`` is missing on macOS: perl's ``alarm`` survives the ``exec``
    into the check (alarm(2): "Alarms created by alarm() are preserved across execve"), and
    perl ships with macOS and with Debian/Ubuntu (perl-base)."""
    env, log = shlex.quote(env_file), shlex.quote(log_file)
    run = shlex.join(command)
    if timeout_s is not None:
        run = shlex.join(["perl", "-e", "alarm shift @ARGV; exec @ARGV or die $!",
                          str(int(timeout_s)), *command])
    return f"set -a; [ -f {env} ] && . {env}; set +a; {run} >> {log} 2>&1"


def job_timeout_s(every: str) -> int:
    """How long one scheduled check may run, for cron and systemd alike: half its interval,
    at least a minute (the check's own AWS deadline is shorter still)."""
    return max(60, interval_s(every) // 2)


def cron_line(every: str, command: list[str], env_file: str, log_file: str) -> str:
    value, unit = parse_every(every)
    when = f"*/{value} * * * *" if unit == "m" else f"0 */{value} * * *"
    text = cron_command(command, env_file, log_file, job_timeout_s(every))
    return f"{when} {cron_escape(text)} {CRON_MARKER}"


def without_entry(crontab: str) -> str:
    return "".join(line + "\n" for line in crontab.splitlines() if CRON_MARKER not in line)


CHECK_ENV_SECONDS = ("DSINFRA_CHECK_DEADLINE_S", "DSINFRA_CHECK_INTERVAL_S")
MAX_ENV_SECONDS = 7 * 86400  # a week: far beyond any check interval, and finite


def env_seconds(name: str, value: str | None) -> float | None:
    """A seconds value from the environment (the scheduled check's deadline and interval):
    None when unset or empty; a finite number from 1 s to a week otherwise, or bad input
    naming the variable (``nan``, ``inf``, ``1e999``, ``abc`` and a 5000-digit number
    included)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) > 20 or not text.isascii():
            raise ValueError(text)
        seconds = float(text)
    except (ValueError, OverflowError):
        seconds = float("nan")
    if not 1 <= seconds <= MAX_ENV_SECONDS:  # False for nan as well
        raise UserError(f"invalid value for {name}: {value[:40]!r}; allowed: a number of "
                        f"seconds from 1 to {MAX_ENV_SECONDS}")
    return seconds
