"""Bad stack config through the CLI: never a traceback, always exit 2, the key named.

Property-based: hypothesis draws bad values per key, writes them into a copy of the project's
dev (or prod) stack file under a temporary DSINFRA_PROJECT_DIR, and runs `dsinfra plan`.
"""

from __future__ import annotations

import json

import ipaddress
import shutil
import string

import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsinfra.budget import ON_EXCEED
from dsinfra.catalog import GPU_INSTANCE_TYPES, SUPPORTED_REGIONS
from dsinfra.infra.offline import run_offline
from dsinfra.tiers import TIERS
from offline_stacks import PROJECT_DIR, stack_values

runner = CliRunner()
TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_./: ", max_size=30)
WRONG_SHAPE = st.one_of(st.lists(st.integers(), min_size=1, max_size=3),
                        st.dictionaries(TEXT, st.integers(), min_size=1, max_size=2))


# Words pydantic reads as booleans (lax mode).
_BOOL_WORDS = {"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def _bad_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return True
    return False


def _bad_idle_minutes(text: str) -> bool:
    from dsinfra.idle import parse_idle_minutes

    try:
        parse_idle_minutes(text)
    except ValueError:
        return True
    return False


BAD_VALUES: dict[str, st.SearchStrategy] = {
    "tier": st.one_of(TEXT.filter(lambda t: t not in TIERS),
                      st.integers()),
    "region": TEXT.filter(lambda t: t not in SUPPORTED_REGIONS),
    "instanceType": st.one_of(TEXT.filter(lambda t: t not in GPU_INSTANCE_TYPES),
                              st.just("t3.micro")),
    "nodeCount": st.one_of(st.integers(max_value=0), st.integers(min_value=65), WRONG_SHAPE),
    "precision": TEXT.filter(lambda t: t not in ("bf16", "fp16", "fp8", "int8", "int4")),
    "maxModelLen": st.integers(max_value=255),
    "apiPort": st.one_of(st.integers(max_value=0), st.integers(min_value=65536)),
    "rootVolumeGiB": st.one_of(st.integers(max_value=29), st.integers(min_value=16385)),
    "sshAllowedCidrs": st.one_of(
        st.lists(TEXT.filter(_bad_cidr), min_size=1, max_size=3),
        st.sampled_from([["0.0.0.0/0"], ["::/0"], ["203.0.113.0/24", "0.0.0.0/0"]])),
    "apiAllowedCidrs": st.lists(TEXT.filter(_bad_cidr), min_size=1, max_size=3),
    "amiId": TEXT.filter(lambda t: not t.startswith("ami-")),
    "capacityReservationId": TEXT.filter(lambda t: not t.startswith("cr-")),
    "engineImage": st.one_of(TEXT.map(lambda t: f"repo/{t}:latest"),
                             st.just("vllm/vllm-openai")),
    "ttlHours": st.one_of(st.floats(max_value=0, allow_nan=False), WRONG_SHAPE),
    "sshPublicKey": TEXT.filter(lambda t: not t.startswith("ssh-")),
    "protect": TEXT.filter(lambda t: t.lower() not in _BOOL_WORDS),
    "spot": st.one_of(TEXT.filter(lambda t: t.lower() not in _BOOL_WORDS), WRONG_SHAPE),
    "availabilityZone": st.sampled_from(["us-west-2a", "eu-west-1b", "ap-south-1c"]),
    "idleMinutes": st.one_of(st.integers(min_value=1, max_value=9),
                             st.integers(min_value=10081), st.integers(max_value=-1),
                             st.just(True), st.just(12.5),
                             TEXT.filter(_bad_idle_minutes)),
    "notifyTopicArn": TEXT.filter(lambda t: not t.startswith("arn:")),
    "expiresAt": TEXT.filter(lambda t: not t[:1].isdigit()),
    "tags": st.one_of(
        TEXT.map(lambda t: {f"dsinfra:{t}": "x"}),
        TEXT.map(lambda t: {f"aws:{t}": "x"}),
        st.text(min_size=257, max_size=300).map(lambda t: {"team": t})),
    "engine": st.one_of(
        TEXT.filter(lambda t: t not in ("vllm", "sglang", "custom")),
        st.just({"name": "custom"}), st.just({"name": "custom", "image": "x/y:1"}),
        st.integers(min_value=65536).map(lambda p: {"name": "vllm", "port": p}),
        TEXT.filter(lambda t: not t.startswith("/")).map(
            lambda t: {"name": "vllm", "healthPath": t})),
    "budget": st.one_of(
        st.floats(max_value=-0.01, allow_nan=False).map(lambda v: {"amountUsd": v}),
        TEXT.filter(lambda t: t not in ON_EXCEED).map(
            lambda t: {"amountUsd": 10, "onExceed": t})),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", folder / "Pulumi.yaml")
    (folder / "stacks").mkdir()
    return folder


def _plan_with(project, base: str, key: str, value) -> object:
    values = {**stack_values(base), key: value}
    document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
    (project / "stacks" / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    return runner.invoke(app_(), ["plan", "bad", "--json"],
                         env={"DSINFRA_PROJECT_DIR": str(project)})


def app_():
    from dsinfra.cli.main import app

    return app


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_any_bad_value_exits_2_naming_the_key_without_a_traceback(project, key):
    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.filter_too_much])
    @given(value=BAD_VALUES[key])
    def check(value):
        result = _plan_with(project, "dev", key, value)
        assert result.exit_code == 2, (value, result.output, result.exception)
        assert f"dsinfra:{key}" in result.output, (value, result.output)
        assert "Traceback" not in result.output
        # With --json the error is also one JSON object on stdout (issue 16).
        body = json.loads(result.stdout)
        assert body["exit_status"] == 2 and f"dsinfra:{key}" in body["error"]

    check()


def test_idle_minutes_on_a_custom_engine_exits_2_naming_the_key(project):
    values = {**stack_values("dev"), "engine": {"name": "custom", "image": "x/y:1", "port": 8080},
              "idleMinutes": 30}
    document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
    (project / "stacks" / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    result = runner.invoke(app_(), ["plan", "bad"], env={"DSINFRA_PROJECT_DIR": str(project)})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "dsinfra:idleMinutes" in result.output and "engine custom" in result.output


def test_spot_outside_dev_exits_2_naming_spot(project):
    result = _plan_with(project, "prod", "spot", True)
    assert result.exit_code == 2 and "dsinfra:spot" in result.output


def test_unknown_key_exits_2_naming_it(project):
    result = _plan_with(project, "dev", "instanceTyp", "g5.xlarge")
    assert result.exit_code == 2 and "dsinfra:instanceTyp" in result.output


@pytest.mark.parametrize(("key", "value"), [("sshAllowedCidrs", ["0.0.0.0/0"]),
                                            ("nodeCount", 0), ("instanceType", "x9.huge"),
                                            ("instanceTyp", "g5.xlarge")])
def test_the_program_refuses_bad_pulumi_config_with_the_same_message(key, value):
    # What `pulumi up` sees: the program reads pulumi.Config and stops with a RunError, which
    # Pulumi prints without a traceback.
    with pytest.raises(pulumi.RunError) as caught:
        run_offline("dev", {**stack_values("dev"), key: value})
    message = str(caught.value)
    assert f"invalid value for dsinfra:{key}" in message and "allowed:" in message
