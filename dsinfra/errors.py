"""Error kinds and the exit status each one maps to.

Users must be able to tell "you asked for something invalid" from "AWS said no" from "dsinfra
has a bug", in scripts as well as on screen, so each kind has its own exit status.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_CLOUD_ERROR = 3
EXIT_INTERRUPTED = 130

# The one exit-status table: every command's failures map through it, and docs/exit-codes.md
# is tested against it (tests/validation/test_exit_codes.py).
EXIT_STATUSES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_BUG: "a bug in dsinfra (please report it with the traceback)",
    EXIT_USER_ERROR: "bad input: a flag, an argument or a stack config value; nothing was "
                     "created or destroyed",
    EXIT_CLOUD_ERROR: "AWS or the Pulumi engine refused or failed",
    EXIT_INTERRUPTED: "interrupted",
}

# Preflight checks (ops/doctor.py) whose failure the stack file fixes: bad input. Any other
# failed check is the account, AWS or the engine (credentials, quota, offer, AMI, Pulumi CLI).
# ``doctor`` and ``up`` both exit through ``exit_for_failed_checks``, so one failed check
# exits the same status in each.
CONFIG_CHECKS: frozenset[str] = frozenset({"budget", "SSH access"})


def exit_for_failed_checks(names: "list[str] | tuple[str, ...]") -> int:
    """3 when any failed check is AWS's or the engine's, 2 when all are the stack's own."""
    if not names:
        return EXIT_OK
    return EXIT_USER_ERROR if all(n in CONFIG_CHECKS for n in names) else EXIT_CLOUD_ERROR


class DsinfraError(Exception):
    """An expected failure with a message meant for the user (no traceback)."""

    exit_code = EXIT_BUG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UserError(DsinfraError):
    """Bad input: a flag, an argument, a config value, a missing file."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserError):
    """A stack config value that is not allowed: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str, *, source: str | None = None) -> None:
        where = f" in {source}" if source else ""
        super().__init__(f"invalid value for {key}{where}: {shown_value(value)}; "
                         f"allowed: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


def shown_value(value: object, max_chars: int = 120) -> str:
    """``repr`` cut to one readable line: a 100 kB value must not become a 100 kB message."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still reported
        text = f"<{type(value).__name__}>"
    if len(text) > max_chars:
        text = f"{text[:max_chars - 20]}... ({len(text):,} characters)"
    return text


class CloudError(DsinfraError):
    """AWS (or the Pulumi engine) refused or failed; the request itself was valid."""

    exit_code = EXIT_CLOUD_ERROR
