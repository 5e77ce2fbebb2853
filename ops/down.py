"""The library side of ``dsinfra down``: guards (protect, confirmation, lock), audit, teardown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import ContextManager

from dsinfra.budget import BudgetTagError, budget_from_tags
from dsinfra.cloud.inventory import fetch_inventory
from dsinfra.cloud import intents
from dsinfra.cloud.ledger import SqliteLedger, state_dir
from dsinfra.ops.local import audit_log, engine_for, explicit_regions, require_known_stack
from dsinfra.cloud.locks import FileLocks, LockHeld
from dsinfra.cloud.teardown import TeardownResult, teardown_stack
from dsinfra.errors import UserError
from dsinfra.testpoints import pause_at


def _stack_file_facts(stack: str) -> tuple[str | None, bool]:
    """(region, protect) from the stack's file when this project has one."""
    try:
        from dsinfra.stackfiles import find_project_dir, load_stack, stack_file

        project = find_project_dir()
        if stack_file(stack, project).exists():
            config = load_stack(stack, project)
            return config.region, config.protect
    except UserError:
        pass
    return None, False


def _where(stack: str, regions: Sequence[str] | None) -> tuple[tuple[str, ...], list]:
    """(regions asked, the stack's billable resources): every enabled region unless
    ``regions`` narrows it, each asked through the tagging API first."""
    from dsinfra.cloud.regions import discover

    discovery = discover(explicit_regions(regions) or None, [stack])
    if discovery.errors:
        from dsinfra.errors import CloudError

        raise CloudError("could not look for the stack in region(s) " + ", ".join(
            f"{r} ({why})" for r, why in sorted(discovery.errors.items())) + "; nothing was "
            "destroyed", hint="Fix access to those regions, or narrow with --region.")
    found = fetch_inventory(discovery.regions, [stack]).resources if discovery.regions else []
    return discovery.asked, found


def destroy_stack(stack: str, regions: Sequence[str] | None, *, yes: bool, force: bool,
                  confirm: Callable[[], str], engine=None,
                  preview: Callable[[tuple[str, ...], list], None] = lambda asked, found: None,
                  working: Callable[[str], ContextManager] = lambda message: nullcontext()
                  ) -> TeardownResult:
    """Guards first (known name, protect, typed confirmation after ``preview`` showed what
    goes), then the audited teardown under the stack's lock in every region that has it."""
    require_known_stack(stack, regions)
    _, file_protect = _stack_file_facts(stack)
    asked, found = _where(stack, regions)
    try:
        protected = file_protect or (bool(found) and
                                     budget_from_tags(stack, [r.tags for r in found]).protect)
    except BudgetTagError:
        protected = True  # unreadable tags: assume the strictest reading
    if protected and not force:
        raise UserError(f"stack {stack!r} is protected (dsinfra:protect=true, or its tags "
                        "cannot be read); nothing was destroyed",
                        hint=f"Pass --force to destroy it: dsinfra down {stack} --force")
    preview(asked, found)
    if not yes and confirm().strip() != stack:
        raise UserError(f"confirmation did not match the stack name {stack!r}; nothing was "
                        "destroyed", hint="Type the stack name exactly, or pass --yes.")
    chosen = tuple(sorted({r.region for r in found})) or asked
    return _teardown(stack, chosen, asked, found, force,
                     engine if engine is not None else engine_for(stack), working)


def _teardown(stack, chosen, asked, found, force, engine, working) -> TeardownResult:
    ledger, log = SqliteLedger(state_dir() / "ledger.sqlite3"), audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            intents.close_interrupted(ledger, log, stack, found)
            intent = intents.begin(ledger, log, stack, "down", forced=force,
                                   resources=len(found), regions_checked=list(asked))
            try:
                with working(f"destroying {stack}: pulumi destroy, then the tag sweep in "
                             f"{', '.join(chosen)}"):
                    result = teardown_stack(stack, chosen, engine=engine, audit=log.append)
                pause_at("down:aws-done")  # AWS did its part; the result is not written
            except Exception as exc:
                intents.finish(ledger, log, intent, stack, "down", "failed",
                               type(exc).__name__)
                raise
            intents.finish(ledger, log, intent, stack, "down",
                           "done" if result.clean else "failed", result.summary,
                           pulumi=result.pulumi)
    except LockHeld:
        raise UserError(f"a cost check is acting on stack {stack!r} right now; nothing was "
                        "destroyed", hint="Try again in a minute.") from None
    finally:
        ledger.close()
    result.regions_checked = list(asked)
    return result
