"""``dsinfra guard deploy|destroy``: the guard's own Pulumi stack, driven through the Engine
protocol of infra/automation.py (no Pulumi call of its own)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GUARD_PROGRAM_DIR = Path(__file__).resolve().parent / "guard_program"
DEFAULT_GUARD_STACK = "guard"


def guard_config(regions: Sequence[str], every_minutes: int, enforce: bool) -> dict[str, str]:
    from dsinfra.errors import UserError

    if not 1 <= every_minutes <= 1440:
        raise UserError(f"invalid value for --every: {every_minutes!r}; allowed: 1-1440 minutes")
    return {"dsinfra-guard:regions": json.dumps(list(regions)),
            "dsinfra-guard:everyMinutes": str(every_minutes),
            "dsinfra-guard:enforce": "true" if enforce else "false",
            "aws:region": regions[0]}


def deploy_guard(engine: Any, stack: str, regions: Sequence[str], every_minutes: int,
                 enforce: bool, on_event=None) -> dict[str, Any]:
    """Set the guard stack's config and ``up`` it; returns the stack outputs."""
    for key, value in guard_config(regions, every_minutes, enforce).items():
        engine.set_config(stack, key, value)
    return engine.up(stack, on_event=on_event)


def guard_engine(webhook_url: str | None = None):
    """The real engine over the guard program; the webhook URL reaches the program through
    its environment and is stored as a Pulumi secret, never as plain config."""
    from dsinfra.errors import UserError
    from dsinfra.infra.automation import STATE_SUBDIR, PulumiEngine
    from dsinfra.stackfiles import find_project_dir

    env = {"DSINFRA_WEBHOOK_URL": webhook_url} if webhook_url else {}
    try:  # the guard's state sits with the project's; the program ships in the package
        home = find_project_dir()
    except UserError:
        home = Path.home()
    return PulumiEngine(guard_workspace(home / ".dsinfra" / "guard"), env_vars=env,
                        state_dir=home / STATE_SUBDIR)


def guard_workspace(folder: Path) -> Path:
    """The guard's Pulumi workspace: the installed program's Pulumi.yaml and __main__.py,
    refreshed on every call (an upgrade brings its program), beside the stack config Pulumi
    writes there (kept). Pulumi writes ``Pulumi.<stack>.yaml`` into its work dir on
    ``set_config``, and the package's own folder may be read-only or replaced on upgrade."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        (folder / name).write_text((GUARD_PROGRAM_DIR / name).read_text())
    stack_config = folder / f"Pulumi.{DEFAULT_GUARD_STACK}.yaml"
    if not stack_config.exists():
        stack_config.write_text((GUARD_PROGRAM_DIR / stack_config.name).read_text())
    return folder


def guard_dry_run(regions: Sequence[str], every_minutes: int, enforce: bool,
                  webhook: bool = False) -> dict[str, Any]:
    """What ``guard deploy`` would create, touching no AWS: the Lambda package built from the
    installed package (its files, size, SHA-256) and the guard program's resources from an
    offline run under the SDK's mocks, with the config ``deploy`` would set."""
    import hashlib
    import tempfile

    from dsinfra.infra.guard import BudgetGuard
    from dsinfra.infra.offline import run_offline
    from dsinfra.ops.guard import HANDLER, build_lambda_zip, guard_args, lambda_files

    config = guard_config(regions, every_minutes, enforce)
    with tempfile.TemporaryDirectory() as folder:
        data = build_lambda_zip(Path(folder) / "guard.zip").read_bytes()

    def program() -> None:
        BudgetGuard("dsinfra", guard_args(list(regions), every_minutes=every_minutes,
                                          enforce=enforce))

    run = run_offline(DEFAULT_GUARD_STACK, {}, program=program)
    return {"config": config, "webhook": webhook, "handler": HANDLER,
            "package": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "files": sorted(lambda_files())},
            "resources": [{"type": r.type, "name": r.name} for r in run.resources
                          if r.custom]}
