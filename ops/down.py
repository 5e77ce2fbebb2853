"""The library side of ``dsinfra down``: guards (protect, confirmation, lock), audit, teardown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import ContextManager

from dsinfra.budget import BudgetTagError, budget_from_tags
from dsinfra.cloud.inventory import fetch_inventory
from dsinfra.cloud.ledger import state_dir
from dsinfra.ops.local import audit_log, engine_for, resolve_regions
from dsinfra.cloud.locks import FileLocks, LockHeld
from dsinfra.cloud.teardown import TeardownResult, teardown_stack
from dsinfra.errors import UserError


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


def destroy_stack(stack: str, regions: Sequence[str] | None, *, yes: bool, force: bool,
                  confirm: Callable[[], str], engine=None,
                  working: Callable[[str], ContextManager] = lambda message: nullcontext()
                  ) -> TeardownResult:
    """Guards first (protect, typed confirmation), then the audited teardown under the
    stack's lock; ``working`` shows progress around the long part."""
    file_region, file_protect = _stack_file_facts(stack)
    chosen = resolve_regions(regions or ([file_region] if file_region else None))
    found = fetch_inventory(chosen, [stack]).resources
    try:
        protected = file_protect or (bool(found) and
                                     budget_from_tags(stack, [r.tags for r in found]).protect)
    except BudgetTagError:
        protected = file_protect
    if protected and not force:
        raise UserError(f"stack {stack!r} is protected (dsinfra:protect=true); nothing was "
                        "destroyed", hint=f"Pass --force to destroy it: dsinfra down {stack} "
                                          "--force")
    if not yes and confirm().strip() != stack:
        raise UserError(f"confirmation did not match the stack name {stack!r}; nothing was "
                        "destroyed", hint="Type the stack name exactly, or pass --yes.")
    engine = engine if engine is not None else engine_for(stack)
    log = audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            log.append("intent", stack=stack, action="down", forced=force,
                       resources=len(found))
            with working(f"destroying {stack}: pulumi destroy, then the tag sweep in "
                         f"{', '.join(chosen)}"):
                result = teardown_stack(stack, chosen, engine=engine)
            log.append("result", stack=stack, action="down",
                       result="done" if result.clean else "failed", reason=result.summary,
                       pulumi=result.pulumi)
    except LockHeld:
        raise UserError(f"a cost check is acting on stack {stack!r} right now; nothing was "
                        "destroyed", hint="Try again in a minute.") from None
    return result
