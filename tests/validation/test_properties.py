"""Property-based (Hypothesis) over all four input kinds: stack files, inventories, model
configs and flags. For every generated input the CLI ends in exit 0 or 2, never a traceback
(an exception escaping the command), within 2 s, and creates or destroys nothing: the moto
account is unchanged afterwards and no Pulumi engine operation was started.

The one-time import of pulumi/pulumi_aws (about 3 s on a loaded machine) happens in a warm-up
before the first timed input, since it is not a per-input cost. SSH is the one effect replaced:
an inventory that passes validation reaches a recorder instead of real hosts, because the
property is about what the door lets through, not about connecting (the bootstrap tests cover
that against real sshd hosts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.config import CONFIG_KEYS

from .conftest import VALID_STACK, write_stack

runner = CliRunner()
# The bound: no input keeps a command busy for more than 2 s. It is held on CPU time, which
# a loaded 2-core CI machine cannot inflate; a hang that sleeps or waits burns no CPU, so wall time
# is bounded too, with room for a worker the scheduler stalls.
TIME_LIMIT_S = 2.0
WALL_LIMIT_S = 10.0
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])

# Scalars a careless user or an attacker writes: edge numbers, booleans, control characters,
# bidi overrides, huge strings, CIDRs and ports near the rules.
EDGE_FLOATS = st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e12, 7e7, 1e300, float("inf"),
                               float("-inf"), float("nan")])
EDGE_INTS = st.sampled_from([0, -1, 1, 22, 65535, 65536, 2**31, 2**63, 10**30, 10**400])
EDGE_TEXT = st.sampled_from(["", "dev", "0.0.0.0/0", "0.0.0.0/1", "::/1", "128.0.0.0/1",
                             "org/name\nExecStartPre=/bin/sh", "a\u202eb", "x" * 5000,
                             "deepseek-ai/DeepSeek-R1", "../../etc/passwd", "true", ".inf",
                             "2026-12-01T18:00:00Z", "9999-12-31T23:59:59Z", "ssh-ed25519 AAAA",
                             # issue 24: trailing newlines, wildcards, non-ASCII digits, year 1,
                             # deep nesting in a string, zone ids, 400-digit numbers
                             "deepseek-ai/DeepSeek-R1\n", "s3://corp-data/*", "s3://b/p\n",
                             "arn:aws:sns:us-east-1:\u0967\u0968\u0969456789012:a",
                             "arn:aws:sns:us-east-1:123456789012:a\n", "fe80::1%eth0\nx",
                             "0001-01-01T00:00:00Z", "[" * 3000, "9" * 400, "1e999", "nan"])
SCALARS = st.one_of(st.none(), st.booleans(), EDGE_INTS, EDGE_FLOATS, EDGE_TEXT,
                    st.integers(), st.floats(), st.text(max_size=40))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@pytest.fixture
def sealed(aws, project, tmp_path, monkeypatch):
    """No engine operation may start; the moto account must look the same afterwards."""
    from dsinfra.infra.automation import PulumiEngine

    started: list[str] = []
    for operation in ("up", "destroy", "set_config", "preview"):
        monkeypatch.setattr(PulumiEngine, operation,
                            lambda self, *a, _op=operation, **k: started.append(_op) or {})
    connected: list[int] = []

    def record_connection(config, hosts, **kwargs):  # noqa: ANN001
        connected.append(len(hosts))
        return _OkReport()

    monkeypatch.setattr("dsinfra.bootstrap.runner.run_bootstrap", record_connection)
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    write_stack(project, "dev", VALID_STACK)
    assert runner.invoke(app, ["plan", "dev", "--json"]).exit_code == 0  # warm-up (imports)
    before = _account()
    yield project
    assert started == [], f"engine operations started: {started}"
    assert _account() == before


class _OkReport:
    ok = True
    hosts: list = []
    run_dir = "-"

    def to_dict(self) -> dict:
        return {"ok": True}


def _account() -> dict:
    """Everything billable or stateful the CLI could create or remove, by id."""
    snapshot = {}
    for region in ("us-east-1", "us-west-2"):
        ec2 = boto3.client("ec2", region_name=region)
        snapshot[region] = (
            sorted(i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                   for i in r["Instances"]),
            sorted(v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]),
            sorted(a.get("AllocationId", "") for a in ec2.describe_addresses()["Addresses"]),
            sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]))
    return snapshot


def _invoke(argv: list[str]):
    started, started_cpu = time.monotonic(), time.process_time()
    result = runner.invoke(app, argv)
    elapsed_s = time.monotonic() - started
    cpu_s = time.process_time() - started_cpu
    assert result.exit_code in (0, 2), (argv, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        (argv, repr(result.exception))
    assert "Traceback" not in result.output
    assert cpu_s < TIME_LIMIT_S and elapsed_s < WALL_LIMIT_S, (argv, cpu_s, elapsed_s)
    return result


# --- stack files ---------------------------------------------------------------------------

STACK_DOCUMENTS = st.dictionaries(
    st.sampled_from(CONFIG_KEYS), VALUES, max_size=6).map(
    lambda values: {"config": {"dsinfra:tier": "dev", "dsinfra:budget": {"amountUsd": 100},
                               **{f"dsinfra:{k}": v for k, v in values.items()}}})
STACK_BYTES = st.one_of(
    STACK_DOCUMENTS.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: ("config:\n  dsinfra:tier: dev\n" + t).encode()),
    st.sampled_from([b"config: &a [*a]\n", b"[" * 5000, b"config:\n  a: 1\n  a: 2\n",
                     "config:\n  dsinfra:tier: dev\n".encode("utf-16")]))


@SETTINGS
@given(content=STACK_BYTES)
def test_any_stack_file_ends_in_exit_0_or_2(sealed, content):
    write_stack(sealed, "fuzz", content)
    _invoke(["plan", "fuzz", "--json"])
    _invoke(["stacks", "--json"])


# --- inventories ---------------------------------------------------------------------------

HOST_KEYS = ("name", "address", "port", "user", "key", "role", "instance_type", "gateway",
             "host_key", "instance_id")
GOOD_HOST = {"address": "10.0.0.5", "role": "head", "instance_type": "g5.xlarge"}
INVENTORIES = st.one_of(
    st.lists(st.dictionaries(st.sampled_from(HOST_KEYS), VALUES, max_size=5).map(
        lambda h: {**GOOD_HOST, **h}), max_size=3).map(lambda hosts: {"hosts": hosts}),
    st.fixed_dictionaries({"hosts": st.just([GOOD_HOST]),
                           "config": st.dictionaries(st.sampled_from(CONFIG_KEYS), VALUES,
                                                     max_size=3)}),
    VALUES)


@SETTINGS
@given(document=INVENTORIES)
def test_any_inventory_ends_in_exit_0_or_2(sealed, document):
    path = sealed / "hosts.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    _invoke(["bootstrap", "--inventory", str(path), "--json"])


# --- model configs -------------------------------------------------------------------------

MODEL_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size",
              "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
              "max_position_embeddings", "tie_word_embeddings", "num_local_experts",
              "num_experts", "num_experts_per_tok", "moe_intermediate_size",
              "shared_expert_intermediate_size", "n_routed_experts", "n_shared_experts",
              "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
              "v_head_dim", "first_k_dense_replace", "decoder_sparse_step")
MIXTRAL = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "models" /
                      "mixtral-8x7b-v0.1.config.json").read_text())
# One or two keys of a real config changed at a time, to values next to the rules (zero,
# negative, huge, booleans, strings, floats): most other keys stay valid, so each bad value is
# the one the schema has to catch, not the first of many.
MODEL_EDGE_LIST = [0, -1, 1, 3, 7, 2**40, 10**30, True, None, "8", 8.0, 1e300, float("nan"), [],
                   "gpt2", "llama", "qwen2_moe", "deepseek_v3"]
MODEL_EDGE_VALUES = st.sampled_from(MODEL_EDGE_LIST)
MODEL_CONFIGS = st.one_of(
    st.dictionaries(st.sampled_from(MODEL_KEYS), MODEL_EDGE_VALUES, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(MODEL_KEYS), VALUES, max_size=3)).map(
    lambda changes: {**MIXTRAL, **changes})


@settings(SETTINGS, max_examples=100)
@given(config=MODEL_CONFIGS, precision=st.sampled_from(["bf16", "fp8", "int4"]))
def test_any_model_config_ends_in_exit_0_or_2(sealed, tmp_path, config, precision):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    _invoke(["size", str(folder), "--precision", precision, "--json"])


# --- flags ---------------------------------------------------------------------------------

FLAG_VALUES = st.one_of(st.integers().map(str), EDGE_INTS.map(str), EDGE_FLOATS.map(str),
                        EDGE_TEXT, st.text(max_size=20))
COMMANDS = {
    "size": (["DeepSeek-R1-Distill-Qwen-7B"], ["--precision", "--context", "--concurrency",
                                               "--kv-cache-dtype", "--region", "--max-nodes"]),
    "advise": (["--hardware-price", "2500", "--local-monthly", "40"],
               ["--hardware-price", "--local-monthly", "--cloud-monthly", "--instance-type",
                "--nodes", "--region", "--usage-hours", "--horizon-months", "--ops-experience",
                "--model", "--local-gpu-gib", "--local-gpus", "--precision", "--context"]),
    "plan": ([], []),
    "up": ([], []),          # no --yes: without a terminal it must stop at the confirmation
    "down": ([], ["--region"]),
    "stacks": ([], []),
}


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    base, flags = COMMANDS[command]
    argv = [command, *base]
    if command in ("plan", "up", "down"):
        argv.append(draw(st.one_of(st.just("dev"), EDGE_TEXT, st.text(max_size=30))))
    for flag in draw(st.lists(st.sampled_from(flags), max_size=3)) if flags else []:
        argv += [flag, draw(FLAG_VALUES)]
    return argv + draw(st.sampled_from([[], ["--json"]]))


@SETTINGS
@given(argv=command_lines())
def test_any_flags_end_in_exit_0_or_2(sealed, argv):
    _invoke(argv)


def test_every_single_key_change_of_a_real_config_is_sized_or_refused(tmp_path):
    """Exhaustive where random sampling is thin: each key x each edge value, one at a time,
    through the same sizing the CLI runs (432 cases, ~6 s)."""
    from dsinfra.errors import UserError
    from dsinfra.sizing import size_model

    path = tmp_path / "config.json"
    for key in MODEL_KEYS:
        for value in MODEL_EDGE_LIST:
            path.write_text(json.dumps({**MIXTRAL, key: value}))
            try:
                result = size_model(str(path))
            except UserError:
                continue
            except Exception as exc:  # noqa: BLE001 - the assertion names the input
                pytest.fail(f"{key}={value!r}: {exc!r}")
            assert result.params > 0 and result.kv_bytes_per_token > 0, (key, value)
