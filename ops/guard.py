"""What the in-account guard runs and may do, composed for infra/guard.py's ``BudgetGuard``:
the Lambda's files (the core's pure modules, cloud's boto3 edge and ops/check.py, all free of
pydantic and pulumi), its handler, and the IAM actions its check and state table need."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# The handler module; the Lambda package is its import closure (dsinfra/shipping.py, the same
# builder as the node kit's), taken from the installed package, so a wheel builds it too.
LAMBDA_ENTRY = "dsinfra.ops.guard_lambda"
HANDLER = f"{LAMBDA_ENTRY}.handler"


def lambda_files() -> dict[str, Path]:
    """Path inside the Lambda zip -> installed source file."""
    from dsinfra.shipping import closure_files

    return closure_files((LAMBDA_ENTRY,))


def build_lambda_zip(dest: Path) -> Path:
    """The Lambda package as a deterministic zip (sorted names, fixed times)."""
    import zipfile

    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, source in sorted(lambda_files().items()):
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes(), zipfile.ZIP_DEFLATED)
    return dest


def guard_args(regions: Sequence[str], *,
               allowed_actions: tuple[str, ...] | None = None, **options):
    """``BudgetGuardArgs`` with the Lambda code and exactly the permissions its check needs;
    ``options`` are the component's other fields (every_minutes, enforce, webhook_url, ...).
    ``allowed_actions`` defaults to every onExceed action of the table
    (dsinfra/budget_actions.py), read at call time."""
    from functools import partial

    from dsinfra import budget_actions
    from dsinfra.cloud.actions import policy_document
    from dsinfra.infra.guard import BudgetGuardArgs

    if allowed_actions is None:
        allowed_actions = budget_actions.on_exceed()
    unknown = [a for a in allowed_actions if a not in budget_actions.on_exceed()]
    if unknown:
        raise ValueError(f"allowed_actions {unknown}; allowed: "
                         f"{', '.join(budget_actions.on_exceed())}")
    return BudgetGuardArgs(regions=list(regions), allowed_actions=allowed_actions,
                           policy=partial(policy_document, allowed_actions),
                           code=lambda_files(), handler=HANDLER, **options)
