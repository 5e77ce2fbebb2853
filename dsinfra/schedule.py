"""What ``dsinfra schedule install`` writes: a systemd service + timer, or a crontab entry.
Pure text rendering; cli/schedule.py writes the files and asks systemd/cron to load them."""

from __future__ import annotations

import re
import shlex

from dsinfra.errors import UserError

UNIT_NAME = "dsinfra-cost-check"
CRON_MARKER = "# dsinfra-cost-check"
_EVERY = re.compile(r"^(\d+)(m|h)$")


def parse_every(every: str) -> tuple[int, str]:
    """``15m`` -> (15, "m"). Minutes 1-59 or hours 1-23: what both cron and systemd can say."""
    match = _EVERY.match(every.strip())
    value, unit = (int(match.group(1)), match.group(2)) if match else (0, "")
    if not match or (unit == "m" and not 1 <= value <= 59) or (unit == "h" and not 1 <= value <= 23):
        raise UserError(f"invalid value for --every: {every!r}; allowed: minutes 1m-59m or "
                        "hours 1h-23h, e.g. 15m")
    return value, unit


def systemd_units(every: str, command: list[str], env_file: str) -> dict[str, str]:
    value, unit = parse_every(every)
    calendar = f"*:0/{value}" if unit == "m" else f"0/{value}:00"
    service = f"""[Unit]
Description=dsinfra cost check (budgets: meter spend, warn, stop or destroy)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
# Webhook URL, SNS topic, state dir and regions; secrets stay out of this unit file.
EnvironmentFile=-{env_file}
ExecStart={shlex.join(command)}
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


def cron_line(every: str, command: list[str], env_file: str) -> str:
    value, unit = parse_every(every)
    when = f"*/{value} * * * *" if unit == "m" else f"0 */{value} * * *"
    load_env = f"[ -f {shlex.quote(env_file)} ] && set -a && . {shlex.quote(env_file)}; "
    return f"{when} {load_env}{shlex.join(command)} >/dev/null 2>&1 {CRON_MARKER}"


def without_entry(crontab: str) -> str:
    return "".join(line + "\n" for line in crontab.splitlines() if CRON_MARKER not in line)
