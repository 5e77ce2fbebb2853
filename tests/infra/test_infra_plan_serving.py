"""Issue 15 in `dsinfra plan`: each node role's engine container (`containers`), the weights'
download and its NAT charge (`weights`), and cheaper-fit advice (`cheaper_fit`)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.tiers import TIERS
from offline_stacks import PROJECT_DIR, SHIPPED, stack_values

runner = CliRunner()


@pytest.fixture(scope="module")
def plans() -> dict[str, dict]:
    out = {}
    for stack in SHIPPED:
        result = runner.invoke(app, ["plan", stack, "--json"],
                               env={"DSINFRA_PROJECT_DIR": str(PROJECT_DIR)})
        assert result.exit_code == 0, result.output
        out[stack] = json.loads(result.stdout)
    return out


def _project_with(tmp_path, name: str, values: dict):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(
        {"config": {f"dsinfra:{k}": v for k, v in values.items()}}))
    return tmp_path


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_role_has_image_command_env_names_mounts_and_ports(plans, stack):
    for entry in plans[stack]["containers"]:
        assert {"image", "command", "env", "mounts", "ports"} <= set(entry)
        # Behind a NAT or over EFA the image comes from the account's ECR (dsinfra/images.py)
        source = entry["image_source"]
        upstream = source["upstream"] if source else entry["image"]
        assert upstream.startswith("vllm/vllm-openai:")
        assert (source is not None) is TIERS[stack].image_from_ecr
        if source:
            assert entry["image"] == source["runs"].strip() and \
                source["ecr_repository"] == "dsinfra/vllm"
        assert all("=" not in name for name in entry["env"])  # names only
        assert {"target": "/root/.cache/huggingface", "source": "MODEL_CACHE_DIR",
                "read_only": False} in entry["mounts"]


def test_no_secret_value_reaches_the_plan(plans, monkeypatch):
    text = json.dumps(plans["distributed"]["containers"])
    assert "DSINFRA_API_KEY" in text and "VLLM_API_KEY" in text
    assert "=x" not in text and '"x"' not in text  # the placeholder values are dropped


def test_distributed_has_a_head_and_a_worker_over_efa_with_the_r1_recipe(plans):
    head, worker = plans["distributed"]["containers"]
    assert (head["role"], worker["role"]) == ("head", "worker")
    assert head["recipe"]["flags"] == ["--trust-remote-code", "--enable-expert-parallel",
                                       "--reasoning-parser", "deepseek_r1"]
    assert "--enable-expert-parallel" in head["command"][-1]  # the Ray head's bash -c script
    for entry in (head, worker):
        assert {"VLLM_HOST_IP", "FI_PROVIDER", "NCCL_DEBUG"} <= set(entry["env"])
        # The EFA user space is in the derived image, as one set: nothing of the host's is
        # mounted over it (issue 25), and the plan names its layer and environment.
        layer = entry["image_source"]["efa_layer"]
        assert layer["installer"] == "1.47.0" and "--skip-kmod" in layer["flags"]
        assert {"LD_LIBRARY_PATH", "NCCL_NET_PLUGIN"} <= set(layer["env"])
        assert not any(m["source"].startswith("/opt/amazon") for m in entry["mounts"])
        assert entry["devices"] == ["/dev/infiniband"]
    assert [p["port"] for p in head["ports"]] == [8000, 6379]


def test_dev_is_one_head_without_efa(plans):
    (head,) = plans["dev"]["containers"]
    assert head["command"][-2:] == ["--reasoning-parser", "deepseek_r1"]
    assert not any(m["source"].startswith("/opt/amazon") for m in head["mounts"])


def test_private_tier_prices_the_weights_through_the_nat_gateway(plans):
    weights = plans["distributed"]["weights"]
    assert weights["through_nat"] and weights["nodes"] == 2
    assert weights["nat_usd_per_gb"] == 0.045
    assert 600 < weights["size_gb"] < 720  # R1 is published in FP8: ~one byte a parameter
    assert weights["nat_usd_per_deploy"] == pytest.approx(
        weights["size_gb"] * 2 * 0.045, abs=0.01)
    assert plans["dev"]["weights"]["through_nat"] is False  # public subnet: no NAT


def test_a_mirror_removes_the_nat_charge_because_bootstrap_copies_from_it(
        monkeypatch, tmp_path):
    # Bootstrap's model-weights step reads the mirror (tests/bootstrap/test_model_weights.py):
    # the weights come through the S3 gateway endpoint, not the NAT gateway.
    values = {**stack_values("distributed"), "modelCache": "s3://acme-weights/hf"}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "mirror", values)))
    plan = json.loads(runner.invoke(app, ["plan", "mirror", "--json"]).stdout)
    assert plan["weights"]["source"] == "s3://acme-weights/hf"
    assert (plan["weights"]["through_nat"], plan["weights"]["nat_usd_per_deploy"]) == (False, 0.0)
    assert plan["weights"]["size_gb"] > 600 and plan["weights"]["note"] == ""
    # Every role serves the node's read-only copy under the repo id the API keeps.
    for entry in plan["containers"]:
        assert {"source": "MODEL_CACHE_DIR/dsinfra-models/deepseek-ai/DeepSeek-R1",
                "target": "/models/deepseek-ai/DeepSeek-R1", "read_only": True} in entry["mounts"]
    head_command = plan["containers"][0]["command"][-1]
    assert ("--model /models/deepseek-ai/DeepSeek-R1 --served-model-name deepseek-ai/DeepSeek-R1"
            in head_command)


def test_without_bootstrap_reading_the_mirror_plan_would_still_charge_nat(monkeypatch):
    # Money fails safe: the flag is the one place that says the mirror is read.
    from dsinfra import weights
    from offline_stacks import config_of

    monkeypatch.setattr(weights, "BOOTSTRAP_READS_MIRROR", False)
    config = config_of("distributed").model_copy(update={"model_cache": "s3://acme-w/hf"})
    found = weights.weights_download(config)
    assert (found.source, found.through_nat) == ("huggingface", True)
    assert found.nat_usd_per_deploy > 60 and "not read by bootstrap yet" in found.note


def test_r1_fp8_on_two_p5_is_told_one_p5en_holds_it_for_less(plans):
    advice = plans["distributed"]["cheaper_fit"]
    assert advice["current"] == {**advice["current"], "instance_type": "p5.48xlarge",
                                 "nodes": 2, "hourly_usd": 110.08}
    assert advice["cheaper"]["instance_type"] == "p5en.48xlarge"
    assert advice["cheaper"]["nodes"] == 1 and advice["cheaper"]["hourly_usd"] == 63.296
    assert advice["saving_hourly_usd"] == pytest.approx(110.08 - 63.296, abs=1e-3)


def test_cheaper_fit_is_shown_in_the_table_and_the_stack_is_unchanged(monkeypatch):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(PROJECT_DIR))
    before = (PROJECT_DIR / "stacks" / "Pulumi.distributed.yaml").read_text()
    result = runner.invoke(app, ["plan", "distributed"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1x p5en.48xlarge also holds" in result.stdout and "$63.30/h" in result.stdout
    assert "2x p5.48xlarge at $110.08/h" in result.stdout
    assert "through the NAT gateway" in result.stdout
    assert (PROJECT_DIR / "stacks" / "Pulumi.distributed.yaml").read_text() == before


def test_a_stack_already_at_its_cheapest_gets_no_advice(monkeypatch, tmp_path):
    values = {**stack_values("distributed"), "instanceType": "p5en.48xlarge", "nodeCount": 1}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "cheap", values)))
    result = runner.invoke(app, ["plan", "cheap", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cheaper_fit"] is None


def test_a_tier_without_efa_is_never_advised_to_split_across_nodes(plans):
    advice = plans["prod"]["cheaper_fit"]  # prod attaches no EFA: one node per replica
    assert advice is None or advice["cheaper"]["nodes"] == 1


# --- issue 22 item 5: the shipped stacks follow the cheaper-fit advice or say why not ---------

def _panel_text(output: str, title: str) -> str:
    """The words of the titled rich panel in ``output``, its borders and line breaks removed."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f" {title} " in line and "╭" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("╰"))
    return " ".join(line.strip().strip("│").strip() for line in lines[start + 1:end])


def _words(text: str) -> str:
    return " ".join(text.split())


def test_init_ships_one_stack_per_tier():
    from dsinfra.stackfiles import list_stacks, read_stack_values, shipped_project, stack_file
    from dsinfra.tiers import TIERS

    shipped = shipped_project()
    assert {read_stack_values(stack_file(s, shipped))["tier"] for s in list_stacks(shipped)} \
        == set(TIERS)


@pytest.mark.parametrize("tier", sorted(__import__("dsinfra.tiers").tiers.TIERS))
def test_each_shipped_stack_is_the_cheapest_fit_or_plan_says_why_not(tier):
    """What `dsinfra init` writes: a stack per tier. Either plan finds nothing cheaper that holds
    its model and context, or its cheaper-fit panel prints each reason the stack is kept."""
    from dsinfra.stackfiles import list_stacks, read_stack_values, shipped_project, stack_file

    shipped = shipped_project()
    (stack,) = [s for s in list_stacks(shipped)
                if read_stack_values(stack_file(s, shipped))["tier"] == tier]
    env = {"DSINFRA_PROJECT_DIR": str(shipped), "COLUMNS": "120"}
    advice = json.loads(runner.invoke(app, ["plan", stack, "--json"], env=env).stdout)[
        "cheaper_fit"]
    if advice is None:
        return
    assert advice["kept_because"], f"{stack}: {advice['cheaper']} is cheaper and no reason given"
    shown = runner.invoke(app, ["plan", stack], env=env)
    assert shown.exit_code == 0, shown.output
    panel = _panel_text(shown.stdout, "cheaper fit")
    assert f"{advice['cheaper']['nodes']}x {advice['cheaper']['instance_type']} also holds" \
        in panel
    for reason in advice["kept_because"]:
        assert _words(reason.rstrip(".")) in panel


def test_a_tier_defined_by_nvlink_keeps_its_nvswitch_type_against_pcie_tensor_parallel():
    """The rule, not a stack's text: every NVLink tier whose stack (its fitReason removed) is
    offered a multi-GPU type without NVSwitch gets the PCIe reason; a tier without NVLink
    offered the same never does."""
    from dsinfra.catalog import INSTANCE_SPECS
    from dsinfra.config import parse_stack_config
    from dsinfra.sizing import cheaper_fit
    from dsinfra.tiers import TIERS

    checked = []
    for tier, spec in TIERS.items():
        values = {**stack_values(tier), "fitReason": None}
        advice = cheaper_fit(parse_stack_config(tier, {k: v for k, v in values.items()
                                                       if v is not None}))
        if advice is None:
            continue
        other = INSTANCE_SPECS[advice.cheaper.instance_type]
        crosses_pcie = (not other.nvswitch and advice.cheaper.tensor_parallel > 1
                        and INSTANCE_SPECS[advice.current.instance_type].nvswitch)
        pcie = [r for r in advice.kept_because if "over PCIe" in r]
        assert bool(pcie) == (spec.nvlink and crosses_pcie), (tier, advice)
        if pcie:
            checked.append({k: v for k, v in values.items() if v is not None})
    assert checked, "no shipped NVLink tier is offered a PCIe type: the rule went untested"
    # The same offer on a tier without NVLink (or EFA, which would change the offer): no
    # reason, the plain advice.
    no_nvlink = next(t for t, s in TIERS.items() if not s.nvlink and not s.efa)
    values = {**checked[0], "tier": no_nvlink, "protect": False}
    advice = cheaper_fit(parse_stack_config("plain", values))
    assert advice is not None and advice.kept_because == ()


def test_a_stated_fit_reason_is_printed_as_text_and_a_bad_one_is_one_line_exit_2(
        monkeypatch, tmp_path):
    from dsinfra.config import parse_stack_config
    from dsinfra.sizing import cheaper_fit
    from dsinfra.tiers import TIERS

    offered = next(t for t in TIERS if cheaper_fit(parse_stack_config(t, stack_values(t))))
    values = {**stack_values(offered), "fitReason": "[bold]ours[/bold]: a 2-node demo"}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "why", values)))
    shown = runner.invoke(app, ["plan", "why"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "Kept: [bold]ours[/bold]: a 2-node demo." in _panel_text(shown.stdout, "cheaper fit")
    (tmp_path / "bad").mkdir()
    _project_with(tmp_path / "bad", "why", {**values, "fitReason": "two\nlines"})
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(tmp_path / "bad"))
    bad = runner.invoke(app, ["plan", "why"])
    assert bad.exit_code == 2
    assert "dsinfra:fitReason" in bad.output and "one line" in bad.output
    assert len(bad.output.strip().splitlines()) <= 2 and "Traceback" not in bad.output
