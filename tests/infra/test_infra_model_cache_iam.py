"""With ``dsinfra:modelCache`` the node role may read exactly that mirror (issue 15, item 3):
GetObject under the prefix, ListBucket on the bucket only for that prefix. Under Pulumi mocks."""

from __future__ import annotations

import json

import pytest

from dsinfra.infra.offline import run_offline
from dsinfra.infra.security import SSM_CORE_POLICY_ARN
from offline_stacks import stack_values

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


@pytest.fixture(scope="module")
def mirrored():
    return run_offline("dist-mirror", stack_values("distributed",
                                                   {"modelCache": "s3://acme-weights/hf/v1"}))


def _mirror_policy(run):
    (policy,) = [p for p in run.of_type(ROLE_POLICY) if p.name.endswith("weights-mirror")]
    return policy


def test_the_node_role_reads_only_the_mirror_under_its_prefix(mirrored):
    policy = _mirror_policy(mirrored)
    document = json.loads(policy.inputs["policy"])
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {"ReadWeightsMirror", "ListWeightsMirror"}
    read, listing = statements["ReadWeightsMirror"], statements["ListWeightsMirror"]
    assert (read["Effect"], read["Action"], read["Resource"]) == \
        ("Allow", "s3:GetObject", "arn:aws:s3:::acme-weights/hf/v1/*")
    assert "Condition" not in read
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", "arn:aws:s3:::acme-weights")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["hf/v1", "hf/v1/*"]}}
    # Nothing else: no wildcard action, no other bucket, no write.
    assert all("*" not in s["Action"] and "Put" not in s["Action"] for s in statements.values())


def test_the_mirror_policy_is_on_the_node_role_beside_ssm_core_only(mirrored):
    policy = _mirror_policy(mirrored)
    (role,) = mirrored.of_type("aws:iam/role:Role")
    assert policy.inputs["role"] == role.id and "NodeIdentity" in policy.parent
    attachments = mirrored.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert [a.inputs["policyArn"] for a in attachments] == [SSM_CORE_POLICY_ARN]


def test_a_stack_without_a_mirror_gets_no_s3_access(runs):
    # Dev's node role has the idle watcher's policy (issue 16), which names no S3 action.
    for run in runs.values():
        actions = [a for p in run.of_type(ROLE_POLICY)
                   for s in json.loads(p.inputs["policy"])["Statement"]
                   for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
        assert not [a for a in actions if a.startswith("s3:")], actions


def test_engine_images_come_from_ecr_only_where_the_tier_says_and_only_dsinfra_repositories(runs):
    """The node role may use ECR where its tier takes the engine image from there (behind a
    NAT, or over EFA: TierSpec.image_from_ecr), and only dsinfra/* repositories there."""
    from offline_stacks import config_of

    for name, run in runs.items():
        found = [p for p in run.of_type(ROLE_POLICY) if p.name.endswith("engine-image")]
        assert bool(found) is config_of(name).tier_spec.image_from_ecr, name
        for policy in found:
            statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
            assert statements["RegistryToken"]["Action"] == ["ecr:GetAuthorizationToken"]
            scoped = statements["EngineImagesOnly"]
            assert scoped["Resource"].endswith(":repository/dsinfra/*")
            assert "ecr:DeleteRepository" not in scoped["Action"] and \
                not any(a.endswith("*") for a in scoped["Action"])


# Issue 24 item 2: a prefix names a folder, never a wildcard; IAM covers exactly that prefix.
@pytest.mark.parametrize("uri", ["s3://corp-data/*", "s3://corp-data/hf*", "s3://corp-data/h?",
                                 "s3://corp-data//hf", "s3://corp-data/hf\n",
                                 "s3://corp-data/hf/v1\n"])
def test_a_wildcard_or_newline_mirror_is_refused_before_any_policy(uri):
    from dsinfra.errors import ConfigError
    from dsinfra.infra.security import mirror_read_policy

    with pytest.raises(ConfigError, match="dsinfra:modelCache"):
        mirror_read_policy(uri)
    with pytest.raises(Exception, match="modelCache"):
        run_offline("dist-wild", stack_values("distributed", {"modelCache": uri}))


@pytest.mark.parametrize("uri, objects, prefixes", [
    ("s3://acme-weights/hf/", "arn:aws:s3:::acme-weights/hf/*", ["hf", "hf/*"]),
    ("s3://acme-weights/a.b/c-d_e", "arn:aws:s3:::acme-weights/a.b/c-d_e/*",
     ["a.b/c-d_e", "a.b/c-d_e/*"]),
])
def test_the_grant_covers_exactly_the_prefix_folder(uri, objects, prefixes):
    from dsinfra.infra.security import mirror_read_policy

    read, listing = mirror_read_policy(uri)["Statement"]
    assert read["Resource"] == objects
    assert listing["Condition"]["StringLike"]["s3:prefix"] == prefixes
    assert "?" not in json.dumps(read) and read["Resource"].count("*") == 1
