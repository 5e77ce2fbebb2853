"""The layer rules of docs/ARCHITECTURE.md, checked on the source: the core imports no other
package; the edge packages (infra, cloud, bootstrap) import only the core, never each other,
never the use cases in ops/ and never the CLI; ops/ imports the core and the edges, never the
CLI. There is no allow-list: a crossing is fixed by moving the composing code to ops/ or by
passing the dependency in (as ops/guard.py passes cloud's permissions to infra's guard)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = {"dsinfra": "core", "infra": "infra", "cloud": "cloud", "bootstrap": "bootstrap",
               "ops": "ops", "cli": "cli"}
EDGES = ("infra", "cloud", "bootstrap")
USE_CASES = ("plan", "up", "down", "check", "doctor", "status")


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
    for directory in ("dsinfra", *EDGES, "ops"):
        assert {(f, m) for f, m, target in _edges_of(directory) if target == "cli"} == set()


def test_edge_packages_import_only_the_core():
    crossing = {(f, m) for d in EDGES for f, m, target in _edges_of(d) if target != "core"}
    assert crossing == set(), "an edge package imports another edge, ops/ or the CLI"


def test_ops_imports_the_core_and_the_edges_only():
    assert {(f, m) for f, m, target in _edges_of("ops")
            if target not in ("core", *EDGES)} == set()


def test_each_use_case_has_its_module_in_ops():
    assert [name for name in USE_CASES if not (ROOT / "ops" / f"{name}.py").is_file()] == []


def test_cli_command_modules_do_not_import_the_root_command():
    """cli/main.py composes the command modules; one importing it back is the old circle."""
    for path in sorted((ROOT / "cli").glob("*.py")):
        # entry.py is the console script, above the root: it installs Ctrl-C handling, then runs it
        if path.name not in ("main.py", "__main__.py", "entry.py"):
            assert "dsinfra.cli.main" not in _imports(path), path.name


TIER_TEST = re.compile(r"""\btier\s*(==|!=)\s*["']|["'](dev|prod|distributed)["']\s*(==|!=)""")


def test_no_module_tests_a_tier_by_name():
    """Tier traits come from dsinfra/tiers.py's TierSpec, not from comparing names."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if TIER_TEST.search(line)]
    assert offenders == []


# An engine's name compared, or keyed in a literal dict: its traits are EngineSpec fields.
ENGINE_TEST = re.compile(r"""(name|engine)\s*(==|!=|in)\s*[("']+(vllm|sglang|custom)["']"""
                         r"""|["'](vllm|sglang|custom)["']\s*(==|!=|:)""")


def test_no_module_tests_an_engine_by_name():
    """Engine traits come from dsinfra/engines.py's EngineSpec (issue 26 item 3: defaults,
    idle metrics and peer ports were switched by name in three modules). The table itself and
    the recipes (data keyed by engine) are where names belong."""
    allowed = {"dsinfra/engines.py", "dsinfra/recipes.py"}
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 if str(path.relative_to(ROOT)) not in allowed
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if ENGINE_TEST.search(line)]
    assert offenders == []


def test_the_config_schema_takes_tier_and_action_names_from_the_core():
    from typing import get_args

    from dsinfra.budget import ON_EXCEED, PERIODS
    from dsinfra.config import BudgetConfig, StackConfig
    from dsinfra.tiers import TIERS

    assert get_args(StackConfig.model_fields["tier"].annotation) == tuple(TIERS)
    for name in ON_EXCEED:  # validated against the action table at validation time
        assert BudgetConfig.model_validate({"amountUsd": 1, "onExceed": name}).on_exceed == name
    assert get_args(BudgetConfig.model_fields["period"].annotation) == PERIODS
    from dsinfra.config import EngineConfig
    from dsinfra.engines import engine_names

    for name in engine_names():  # validated against the engine table at validation time
        values = {"name": name, "image": "x/y:1", "port": 8080}
        assert EngineConfig.model_validate(values).name == name


ACTION_LIST = re.compile(r"""\(\s*["'](notify|stop|destroy)["']\s*,\s*["'](stop|destroy)["']""")


def test_action_names_are_listed_only_in_the_action_table():
    """The budget actions are rows of dsinfra/budget_actions.py; no other module keeps its own
    list of them (issue 23 item 6 found five)."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 if path.name != "budget_actions.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if ACTION_LIST.search(line)]
    assert offenders == []
