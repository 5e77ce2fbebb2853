"""Wiring of the cost check for a workstation or CI runner: SQLite ledger, JSON-lines audit log
and file locks in the state directory, the Pulumi engine where the stack's project is here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from dsinfra.catalog import SUPPORTED_REGIONS
from dsinfra.cloud.audit import AuditLog
from dsinfra.ops.check import CheckContext
from dsinfra.cloud.ledger import SqliteLedger, state_dir
from dsinfra.cloud.locks import FileLocks
from dsinfra.cloud.notify import Notifier
from dsinfra.errors import UserError

_REGION_SHAPE = r"[a-z]{2}(-gov)?-[a-z]+-[0-9]"


def resolve_regions(regions: Sequence[str] | None) -> tuple[str, ...]:
    """``--region`` values, else ``$DSINFRA_REGIONS`` (comma-separated), else the catalog's."""
    import re

    chosen = list(regions or []) or [r.strip() for r in
                                     os.environ.get("DSINFRA_REGIONS", "").split(",") if r.strip()]
    for region in chosen:
        if not re.fullmatch(_REGION_SHAPE, region):
            raise UserError(f"invalid value for --region: {region!r}; allowed: an AWS region "
                            f"name such as {', '.join(SUPPORTED_REGIONS)}")
    return tuple(dict.fromkeys(chosen)) or SUPPORTED_REGIONS


def explicit_regions(regions: Sequence[str] | None) -> tuple[str, ...]:
    """``--region`` values, else ``$DSINFRA_REGIONS``, validated; empty when neither is set,
    which means: every region enabled for the account."""
    if not regions and not os.environ.get("DSINFRA_REGIONS", "").strip():
        return ()
    return resolve_regions(regions)


def audit_log() -> AuditLog:
    return AuditLog(state_dir() / "audit.jsonl")


def engine_for(stack: str):
    """A Pulumi engine for ``stack`` when this directory holds its project and the Pulumi CLI
    is installed; None otherwise (teardown then sweeps by tag alone)."""
    from dsinfra.infra.automation import PulumiEngine, pulumi_cli_version
    from dsinfra.stackfiles import find_project_dir, stack_file

    if pulumi_cli_version() is None:
        return None
    try:
        project = find_project_dir()
    except UserError:
        return None
    if not stack_file(stack, project).exists():
        return None
    return PulumiEngine(project)


def local_context(regions: Sequence[str] | None, *, enforce: bool, now: datetime | None = None,
                  audit=None, use_pulumi: bool = True) -> CheckContext:
    from dsinfra.cloud.catalog_cache import load_cached_prices

    root = state_dir()
    prices, spot = load_cached_prices(root)
    ctx = CheckContext(regions=explicit_regions(regions),
                       ledger=SqliteLedger(root / "ledger.sqlite3"),
                       audit=audit or audit_log(), locks=FileLocks(root / "locks"),
                       notifier=Notifier.from_env(), enforce=enforce, prices=prices,
                       spot_prices=spot, engine_for=engine_for if use_pulumi else
                       (lambda stack: None))
    if now is not None:
        ctx.now = now
    return ctx


class NullAudit:
    """For read-only views (report, status): they decide nothing, so they record nothing."""

    durable = False

    def append(self, kind: str, **fields) -> dict:
        return {}


def state_path() -> Path:
    return state_dir()


def known_stacks(regions: Sequence[str] | None = None) -> set[str]:
    """Every stack name dsinfra can vouch for: tagged on something in the account, metered in
    the ledger or with an intent open there, or with a stack file in this project."""
    from dsinfra.cloud.regions import discover
    from dsinfra.stackfiles import find_project_dir, list_stacks

    names = set(discover(explicit_regions(regions) or None).stacks)
    ledger = SqliteLedger(state_dir() / "ledger.sqlite3")
    try:
        names |= set(ledger.stacks())
        # a stack with an intent still open (a run killed mid-action): its next `down`,
        # `stop` or `start` is what closes it, even once AWS has nothing of it left
        names |= {i["stack"] for i in ledger.open_intents()}
    finally:
        ledger.close()
    try:
        names |= set(list_stacks(find_project_dir()))
    except UserError:
        pass
    return names


def require_known_stack(stack: str, regions: Sequence[str] | None = None) -> None:
    """A typo must not "succeed": exit 2 naming the known stacks."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.errors import CloudError

    try:
        names = known_stacks(regions)
    except (BotoCoreError, ClientError) as exc:
        raise CloudError(f"could not list the account's stacks: {exc}") from None
    if stack not in names:
        raise UserError(f"invalid value for STACK: {stack!r}; allowed: a known stack: "
                        f"{', '.join(sorted(names)) or '(none found)'}")
