"""What the in-account guard runs and may do, composed for infra/guard.py's ``BudgetGuard``:
the Lambda's files (the core's pure modules, cloud's boto3 edge and ops/check.py, all free of
pydantic and pulumi), its handler, and the IAM actions its check and state table need."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the Lambda needs, laid out as the import name expects (dsinfra/..., dsinfra/cloud/...).
LAMBDA_SOURCES = {
    "dsinfra": ["__init__.py", "budget.py", "catalog.py", "errors.py", "identifiers.py",
                "schedule.py", "spend.py", "tags.py"],
    "cloud": ["__init__.py", "actions.py", "audit.py", "aws.py", "catalog_cache.py",
              "guard_store.py", "intents.py", "inventory.py", "locks.py", "notices.py",
              "notify.py", "regions.py", "teardown.py"],
    "ops": ["__init__.py", "check.py", "guard_lambda.py"],
}
HANDLER = "dsinfra.ops.guard_lambda.handler"


def lambda_files() -> dict[str, Path]:
    """Path inside the Lambda zip -> source file."""
    files = {f"dsinfra/{name}": ROOT / "dsinfra" / name for name in LAMBDA_SOURCES["dsinfra"]}
    for package in ("cloud", "ops"):
        files.update({f"dsinfra/{package}/{name}": ROOT / package / name
                      for name in LAMBDA_SOURCES[package]})
    return files


def build_lambda_zip(dest: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, source in sorted(lambda_files().items()):
            archive.write(source, arcname)
    return dest


def guard_args(regions: Sequence[str], *,
               allowed_actions: tuple[str, ...] = ("notify", "stop", "destroy"), **options):
    """``BudgetGuardArgs`` with the Lambda code and exactly the permissions its check needs;
    ``options`` are the component's other fields (every_minutes, enforce, webhook_url, ...)."""
    from functools import partial

    from dsinfra.cloud.actions import policy_document
    from dsinfra.infra.guard import BudgetGuardArgs

    return BudgetGuardArgs(regions=list(regions), allowed_actions=allowed_actions,
                           policy=partial(policy_document, allowed_actions),
                           code=lambda_files(), handler=HANDLER, **options)
