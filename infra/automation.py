"""Every Pulumi Automation API call dsinfra makes lives here, behind ``PulumiEngine``.

The Pulumi CLI drives the Automation API, and it is not installable everywhere dsinfra is
tested, so the rest of dsinfra talks to this small interface only; tests substitute an object
with the same methods, and a contract test drives this one wherever ``pulumi`` is on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dsinfra.errors import CloudError, UserError

EventCallback = Callable[[dict[str, Any]], None]


class PulumiUnavailable(UserError):
    """No Pulumi CLI on PATH: the live operations cannot run (offline ones still can)."""


@dataclass(frozen=True)
class PreviewResult:
    change_summary: dict[str, int]
    resources: list[dict[str, Any]] = field(default_factory=list)  # {type, name, inputs, parent}


class Engine(Protocol):
    def preview(self, stack: str, on_event: EventCallback | None = None) -> PreviewResult: ...
    def up(self, stack: str, on_event: EventCallback | None = None) -> dict[str, Any]: ...
    def destroy(self, stack: str, on_event: EventCallback | None = None) -> None: ...
    def outputs(self, stack: str) -> dict[str, Any]: ...
    def set_config(self, stack: str, key: str, value: str) -> None: ...


def pulumi_cli_version() -> str | None:
    """The Pulumi CLI's version, or None when it is not on PATH."""
    exe = shutil.which("pulumi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


STATE_SUBDIR = Path(".dsinfra") / "pulumi"


def pulumi_env(state_dir: Path) -> dict[str, str]:
    """What every Pulumi run gets: the program runs on the Python dsinfra is installed in
    (``PULUMI_PYTHON_CMD``, which pulumi-language-python's pip toolchain runs when Pulumi.yaml
    names no virtualenv; a pipx venv's, not whatever ``python3`` is on PATH), and state goes
    to the local file backend in ``state_dir`` unless ``$PULUMI_BACKEND_URL`` names another
    (``s3://...``, Pulumi Cloud). The file backend encrypts secrets with
    ``$PULUMI_CONFIG_PASSPHRASE`` (or ``_FILE``), which ``_stack`` requires."""
    env = {"PULUMI_PYTHON_CMD": sys.executable}
    if not os.environ.get("PULUMI_BACKEND_URL"):
        env["PULUMI_BACKEND_URL"] = state_dir.resolve().as_uri()
    return env


class PulumiEngine:
    """The real engine: a local workspace over this project's ``Pulumi.yaml``."""

    def __init__(self, project_dir: Path, env_vars: dict[str, str] | None = None,
                 state_dir: Path | None = None) -> None:
        self.project_dir = project_dir
        self.state_dir = state_dir or project_dir / STATE_SUBDIR
        self.env_vars = {**pulumi_env(self.state_dir), **(env_vars or {})}

    def _stack(self, stack: str):
        if pulumi_cli_version() is None:
            raise PulumiUnavailable(
                "the Pulumi CLI is not on PATH",
                hint="Install it (https://www.pulumi.com/docs/install/) or use the offline "
                     "commands (dsinfra plan without --live).")
        env = {**os.environ, **self.env_vars}
        backend = env.get("PULUMI_BACKEND_URL", "")
        if backend.startswith("file://"):
            if not (env.get("PULUMI_CONFIG_PASSPHRASE")
                    or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
                raise UserError(
                    "PULUMI_CONFIG_PASSPHRASE is not set; the local state backend "
                    f"({backend}) needs it (or PULUMI_CONFIG_PASSPHRASE_FILE) to encrypt secrets",
                    hint="export PULUMI_CONFIG_PASSPHRASE=... (keep it out of git), or set "
                         "PULUMI_BACKEND_URL to another backend.")
            if backend == self.state_dir.resolve().as_uri():
                self.state_dir.mkdir(parents=True, exist_ok=True)
        from pulumi import automation as auto

        opts = auto.LocalWorkspaceOptions(work_dir=str(self.project_dir), env_vars=self.env_vars)
        try:
            return auto.create_or_select_stack(stack_name=stack, work_dir=str(self.project_dir),
                                               opts=opts)
        except auto.errors.CommandError as exc:
            raise CloudError(f"pulumi could not select stack {stack!r}: "
                             f"{_tail(str(exc))}") from None

    def preview(self, stack: str, on_event: EventCallback | None = None) -> PreviewResult:
        resources: list[dict[str, Any]] = []

        def collect(event) -> None:
            pre = getattr(event, "resource_pre_event", None)
            if pre is not None and pre.metadata.type != "pulumi:pulumi:Stack":
                new = pre.metadata.new
                # parent: the planner prices a node's root volume from its sibling template.
                resources.append({"type": pre.metadata.type, "name": pre.metadata.urn.split("::")[-1],
                                  "inputs": dict(getattr(new, "inputs", None) or {}),
                                  "parent": getattr(new, "parent", None) or ""})
            if on_event:
                on_event(_event_dict(event))

        result = self._run(stack, "preview", on_event=collect)
        return PreviewResult(change_summary=dict(result.change_summary or {}), resources=resources)

    def up(self, stack: str, on_event: EventCallback | None = None) -> dict[str, Any]:
        self._run(stack, "up", on_event=_forward(on_event))
        return self.outputs(stack)

    def destroy(self, stack: str, on_event: EventCallback | None = None) -> None:
        self._run(stack, "destroy", on_event=_forward(on_event))

    def outputs(self, stack: str) -> dict[str, Any]:
        return {k: v.value for k, v in self._stack(stack).outputs().items()}

    def set_config(self, stack: str, key: str, value: str) -> None:
        from pulumi import automation as auto

        self._stack(stack).set_config(key, auto.ConfigValue(value=value))

    def replace_config_object(self, stack: str, key: str, entries: dict[str, str]) -> None:
        """``key`` becomes the object whose paths are ``entries`` (``extraArgs[0]`` ...), as
        ``pulumi config rm KEY`` then ``pulumi config set --path KEY.PATH VALUE`` for each:
        a key that held a plain string (``dsinfra:engine: vllm``) takes paths only once gone."""
        from pulumi import automation as auto

        target = self._stack(stack)
        target.remove_config(key)
        target.set_all_config({f"{key}.{path}": auto.ConfigValue(value=value)
                               for path, value in entries.items()}, path=True)

    def _run(self, stack: str, operation: str, **kwargs):
        from pulumi import automation as auto

        target = self._stack(stack)
        try:
            return getattr(target, operation)(**kwargs)
        except auto.errors.ConcurrentUpdateError:
            raise CloudError(f"stack {stack!r} is being updated by someone else",
                             hint="Wait for it to finish, or `pulumi cancel` a stale update.") \
                from None
        except auto.errors.CommandError as exc:
            raise CloudError(f"pulumi {operation} failed for stack {stack!r}: "
                             f"{_tail(str(exc))}") from None


def _forward(on_event: EventCallback | None):
    if on_event is None:
        return None
    return lambda event: on_event(_event_dict(event))


def _event_dict(event) -> dict[str, Any]:
    """Engine events as plain dicts, the only shape the rest of dsinfra sees."""
    for kind in ("resource_pre_event", "res_outputs_event", "res_op_failed_event",
                 "diagnostic_event", "summary_event"):
        payload = getattr(event, kind, None)
        if payload is None:
            continue
        out: dict[str, Any] = {"kind": kind}
        metadata = getattr(payload, "metadata", None)
        if metadata is not None:
            out.update(type=metadata.type, urn=metadata.urn, op=str(metadata.op))
        if kind == "diagnostic_event":
            out.update(severity=payload.severity, message=payload.message)
        if kind == "summary_event":
            out.update(resource_changes=dict(payload.resource_changes or {}))
        return out
    return {"kind": "other"}


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
