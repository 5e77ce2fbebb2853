"""Facts the docs state about the code come from the code, or fail here (issue 26 item 5):
Pulumi.yaml's config keys, defaults, ranges and per-tier and per-engine defaults against the
schema, TIERS and ENGINE_SPECS; the bootstrap step list in docs/bootstrap.md and the summary
table's column names against STEPS. (The nodes' IAM policies: tests/infra/test_infra_policies.py;
the budget action table: tests/cost/test_action_table.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import yaml

from dsinfra import budget_actions
from dsinfra.bootstrap.steps import STEPS, step_names
from dsinfra.config import CONFIG_KEYS, BudgetConfig, EngineConfig, Precision, StackConfig
from dsinfra.engines import ENGINE_SPECS, engine_names, idle_engines
from dsinfra.idle import MAX_IDLE_MINUTES, MIN_IDLE_MINUTES
from dsinfra.tiers import TIERS

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
KEYS = PROJECT["config"]


def _describe(key: str) -> str:
    return KEYS[f"dsinfra:{key}"]["description"]


def _per_tier(value) -> str:
    return "Tier default: " + ", ".join(f"{t.name} {value(t)}" for t in TIERS.values()) + "."


def test_pulumi_yaml_documents_exactly_the_schemas_keys_in_its_order():
    assert list(KEYS) == [f"dsinfra:{key}" for key in CONFIG_KEYS]


def test_the_defaults_pulumi_yaml_declares_are_the_schemas():
    fields = {(f.alias or name): f for name, f in StackConfig.model_fields.items()}
    for key, entry in KEYS.items():
        if "default" not in entry:
            continue
        field = fields[key.removeprefix("dsinfra:")]
        default = field.default_factory() if field.default_factory else field.default
        if key == "dsinfra:engine":
            default = default.name
        assert entry["default"] == default, key


def test_per_tier_defaults_are_the_tiers():
    assert "(" + ", ".join(TIERS) + ")" in PROJECT["description"]
    assert all(re.search(rf"\b{name}\b", _describe("tier")) for name in TIERS)
    assert _per_tier(lambda t: t.default_instance_type) in _describe("instanceType")
    assert _per_tier(lambda t: t.default_node_count) in _describe("nodeCount")
    assert _per_tier(lambda t: t.default_model) in _describe("model")
    assert _per_tier(lambda t: t.idle_minutes or "off") in _describe("idleMinutes")
    spot = [t.name for t in TIERS.values() if t.spot_allowed]
    assert f"({' and '.join(spot)} tier{'s' if len(spot) > 1 else ''} only)" in \
        _describe("spot")


def test_per_engine_defaults_are_the_engine_tables():
    assert " | ".join(engine_names()) in _describe("engine")
    utilization = EngineConfig.model_fields["gpu_memory_utilization"].default
    assert f"gpuMemoryUtilization (default {utilization:.2f})" in _describe("engine")
    images = ", ".join(f"{s.image} ({s.name})" for s in ENGINE_SPECS.values() if s.image)
    assert f"Default: {images}." in _describe("engineImage")
    ports = ", ".join(f"{s.name} {s.port}" for s in ENGINE_SPECS.values() if s.port)
    assert f"Default the engine's ({ports})." in _describe("apiPort")
    quiet = [n for n in engine_names() if n not in idle_engines()]
    assert f"off for engine {' and '.join(quiet)} (no metrics to read)" in \
        _describe("idleMinutes")


def test_the_docs_word_lists_are_the_tables():
    quiet = [n for n in engine_names() if n not in idle_engines()]
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    assert f"refused with engine {' and '.join(f'`{n}`' for n in quiet)} (no metrics to read)" \
        in configuration
    budgets = (ROOT / "docs" / "budgets.md").read_text()
    assert "`action` is `" + "|".join(("none", *budget_actions.on_exceed())) + "`" in budgets


def test_ranges_and_word_lists_are_the_schemas():
    assert "|".join(get_args(Precision)) in _describe("precision")
    assert f"({MIN_IDLE_MINUTES}-{MAX_IDLE_MINUTES})" in _describe("idleMinutes")
    budget = _describe("budget")
    assert "onExceed: " + "|".join(budget_actions.on_exceed()) + " (default " \
        f"{BudgetConfig.model_fields['on_exceed'].default})" in budget
    assert f"warnAt: 0-1 (default {BudgetConfig.model_fields['warn_at'].default})" in budget
    for key, name in (("rootVolumeGiB", "root_volume_gib"), ("nodeCount", "node_count"),
                      ("apiIdleTimeoutS", "api_idle_timeout_s")):
        low = next(m.ge for m in StackConfig.model_fields[name].metadata if hasattr(m, "ge"))
        high = next(m.le for m in StackConfig.model_fields[name].metadata if hasattr(m, "le"))
        assert re.search(rf"\b{low}-{high}\b", _describe(key)), key


def test_the_model_cache_doc_names_the_step_that_reads_it():
    """It said "Bootstrap does not read it yet" long after the model-weights step did."""
    (step,) = [s for s in STEPS if s.name == "model-weights"]
    assert "`model-weights`" in _describe("modelCache") and "not read" not in \
        _describe("modelCache")
    assert "SSM" not in _describe("sshAllowedCidrs")  # nodes are reached through the EICE


def test_docs_bootstrap_lists_every_step_in_order():
    text = (ROOT / "docs" / "bootstrap.md").read_text()
    table = text[text.index("| step | what it makes sure of |"):]
    rows = re.findall(r"^\| `([a-z-]+)` \|", table.split("\n\n")[0], re.MULTILINE)
    assert rows == step_names()


def test_the_summary_tables_short_names_are_steps_and_no_prose_counts_them():
    from dsinfra.cli import bootstrap_display

    assert set(bootstrap_display._SHORT) <= set(step_names())
    words = "one two three four five six seven eight nine ten eleven twelve thirteen " \
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    count = re.compile(rf"\b(\d+|{'|'.join(words)}) (bootstrap )?(step|steps|step columns)\b",
                       re.IGNORECASE)
    for path in (ROOT / "cli" / "bootstrap_display.py", ROOT / "bootstrap" / "steps.py",
                 ROOT / "docs" / "bootstrap.md", ROOT / "README.md"):
        for match in count.finditer(path.read_text()):
            said = match.group(1).lower()
            number = int(said) if said.isdigit() else words.index(said) + 1
            assert number == len(STEPS), (path.name, match.group(0))


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_ships_a_stack_file_of_its_name(tier):
    assert (ROOT / "stacks" / f"Pulumi.{tier}.yaml").is_file()
