"""The layer rules of docs/ARCHITECTURE.md, checked on the source: the core imports no other
package; the edge packages (infra, cloud, bootstrap) import only the core, never each other
and never the CLI. ``ALLOWED_CROSS_EDGE`` lists the edges that break the rule today: the use
cases that issue 14 part B moves into ``dsinfra/ops/``. Part B empties it; an entry whose edge
is gone fails ``test_the_allow_list_has_no_stale_entries``, so the list only shrinks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = {"dsinfra": "core", "infra": "infra", "cloud": "cloud", "bootstrap": "bootstrap",
               "cli": "cli"}
EDGES = ("infra", "cloud", "bootstrap")

# (importing file, imported module): every cross-edge import left for part B.
ALLOWED_CROSS_EDGE = {
    ("infra/lifecycle.py", "dsinfra.bootstrap.runner"),  # use case `up` -> ops/up.py
    ("infra/lifecycle.py", "dsinfra.bootstrap.secrets"),
    ("infra/lifecycle.py", "dsinfra.cloud.doctor"),
    ("cloud/doctor.py", "dsinfra.infra.automation"),  # use case `doctor` -> ops/doctor.py
    ("cloud/doctor.py", "dsinfra.infra.planner"),
    ("cloud/local.py", "dsinfra.infra.automation"),  # local stack discovery for check/down
    ("infra/guard.py", "dsinfra.cloud"),  # the guard packages cloud's check for its Lambda
    ("infra/guard.py", "dsinfra.cloud.guard_store"),
    ("bootstrap/hostkeys.py", "dsinfra.cloud.aws"),  # EC2 console output for host-key pins
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dsinfra":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in SOURCE_DIRS.values() else "core"


def _imports(path: Path) -> set[str]:
    """Every dsinfra module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dsinfra":  # `from dsinfra import tags`
                found.update(f"dsinfra.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] == "dsinfra"}


def _edges_of(directory: str) -> set[tuple[str, str, str]]:
    """(file, imported module, imported package) for imports outside ``directory``'s package."""
    own = SOURCE_DIRS[directory]
    edges = set()
    for path in sorted((ROOT / directory).rglob("*.py")):
        for module in _imports(path):
            target = _package(module)
            if target != own:
                edges.add((str(path.relative_to(ROOT)), module, target))
    return edges


def test_the_core_imports_no_other_package():
    assert {(f, m) for f, m, _ in _edges_of("dsinfra")} == set()


def test_no_package_but_the_cli_imports_the_cli():
    for directory in ("dsinfra", *EDGES):
        assert {(f, m) for f, m, target in _edges_of(directory) if target == "cli"} == set()


def test_edge_packages_import_only_the_core():
    crossing = {(f, m) for d in EDGES for f, m, target in _edges_of(d) if target != "core"}
    assert crossing - ALLOWED_CROSS_EDGE == set(), "a new import between edge packages"


def test_the_allow_list_has_no_stale_entries():
    crossing = {(f, m) for d in EDGES for f, m, target in _edges_of(d) if target != "core"}
    assert ALLOWED_CROSS_EDGE - crossing == set(), "remove fixed edges from ALLOWED_CROSS_EDGE"


def test_cli_command_modules_do_not_import_the_root_command():
    """cli/main.py composes the command modules; one importing it back is the old circle."""
    for path in sorted((ROOT / "cli").glob("*.py")):
        if path.name not in ("main.py", "__main__.py"):
            assert "dsinfra.cli.main" not in _imports(path), path.name


TIER_TEST = re.compile(r"""\btier\s*(==|!=)\s*["']|["'](dev|prod|distributed)["']\s*(==|!=)""")


def test_no_module_tests_a_tier_by_name():
    """Tier traits come from dsinfra/tiers.py's TierSpec, not from comparing names."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if TIER_TEST.search(line)]
    assert offenders == []


def test_the_config_schema_takes_tier_and_action_names_from_the_core():
    from typing import get_args

    from dsinfra.budget import ON_EXCEED, PERIODS
    from dsinfra.config import BudgetConfig, StackConfig
    from dsinfra.tiers import TIERS

    assert get_args(StackConfig.model_fields["tier"].annotation) == tuple(TIERS)
    assert get_args(BudgetConfig.model_fields["on_exceed"].annotation) == ON_EXCEED
    assert get_args(BudgetConfig.model_fields["period"].annotation) == PERIODS
