"""``dsinfra iam-policy``: the least-privilege IAM policy the deploying user needs, derived:

- the AWS resource types the Pulumi programs register, from an offline run (SDK mocks, no AWS)
  of every stack in the project and of the guard's program, each mapped through infra/iam.py's
  table to what the provider calls over the resource's life;
- the calls dsinfra itself makes (``up``, ``status``, ``doctor``, the cost check and its budget
  actions, the tunnel), read from cloud/ and ops/ by cloud/iam_calls.py.

Creating and reading go on ``*`` (a resource has no tag before it exists); changing and deleting
are conditioned on the tag dsinfra puts on what it creates (``dsinfra:stack`` on a stack's
resources, ``dsinfra:component=budget-guard`` on the guard's); roles are passed only to the
services the programs hand them to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dsinfra import tags as T

GUARD_TAG = ("dsinfra:component", "budget-guard")  # infra/guard.py tags its resources so
READ_VERBS = ("Describe", "Get", "List", "Query", "Scan", "Head")
CREATE_VERBS = ("Create", "Run", "Allocate", "Import", "Purchase", "Put", "Publish")
# Services whose calls dsinfra makes on what it did not create or cannot tag (the model cache's
# bucket, notices, Cost Explorer, Pricing, who-am-I, the tunnel): these stay on ``*``.
UNTAGGED_SERVICES = ("s3", "sns", "ce", "pricing", "sts", "tag", "ssm")
# EC2 Instance Connect is how dsinfra reaches a stack's nodes: the endpoint tunnel
# (OpenTunnel, on the instance-connect-endpoint) and the one-time key each session pushes
# (SendSSHPublicKey, on the instance). Both resources carry the stack tag, and both actions
# take aws:ResourceTag (Service Authorization Reference, "Amazon EC2 Instance Connect"), so
# every action of the service that the source calls gets its own statement on the stack tag,
# narrowed by the action's own condition key where this table names one.
REACH_SERVICE = "ec2-instance-connect"


def reach_conditions(action: str) -> dict:
    """The condition of one EC2 Instance Connect action: the stack tag, plus the port the
    tunnel may reach (22: the endpoint carries 22 and 3389, dsinfra uses 22) or the login
    user a key may be pushed for."""
    from dsinfra.infra.program import SSH_USER

    narrower = {
        "OpenTunnel": {"NumericEquals": {"ec2-instance-connect:remotePort": "22"}},
        "SendSSHPublicKey": {"StringEquals": {"ec2:osuser": SSH_USER}},
    }.get(action.split(":", 1)[1], {})
    return {"Null": {f"aws:ResourceTag/{T.STACK}": "false"}, **narrower}


@dataclass
class Derivation:
    """Where each action came from: resource type or calling module -> actions."""
    stack_types: dict[str, set[str]] = field(default_factory=dict)  # type -> stacks
    guard_types: set[str] = field(default_factory=set)
    edge: dict[str, list[str]] = field(default_factory=dict)


def program_types(project: Path) -> dict[str, set[str]]:
    """AWS resource type -> the stacks of ``project`` whose offline run registers it."""
    from dsinfra.infra.iam import is_aws_resource
    from dsinfra.infra.offline import run_offline
    from dsinfra.stackfiles import list_stacks, load_stack, read_stack_values, stack_file

    found: dict[str, set[str]] = {}
    for stack in list_stacks(project):
        load_stack(stack, project)  # a UserError (exit 2) for an invalid stack, before running
        run = run_offline(stack, read_stack_values(stack_file(stack, project)))
        for resource in run.resources:
            if is_aws_resource(resource.type):
                found.setdefault(resource.type, set()).add(stack)
    return found


def guard_types() -> set[str]:
    """The AWS resource types the guard's program registers (offline, with a topic so its
    alarms have somewhere to go)."""
    from dsinfra.infra.guard import BudgetGuard
    from dsinfra.infra.iam import is_aws_resource
    from dsinfra.infra.offline import MOCK_ACCOUNT, run_offline
    from dsinfra.ops.guard import guard_args

    def program() -> None:
        BudgetGuard("dsinfra", guard_args(
            ["us-east-1"], enforce=True,
            sns_topic_arn=f"arn:aws:sns:us-east-1:{MOCK_ACCOUNT}:dsinfra-notices"))

    return {r.type for r in run_offline("guard", {}, program=program).resources
            if is_aws_resource(r.type)}


def derive(project: Path) -> Derivation:
    from dsinfra.cloud.iam_calls import edge_actions

    return Derivation(stack_types=program_types(project), guard_types=guard_types(),
                      edge=edge_actions())


def policy_document(d: Derivation) -> dict:
    from dsinfra.infra.iam import PASSED_TO, actions_for

    anywhere: set[str] = set()
    stack_change: set[str] = set()
    guard_change: set[str] = set()
    reach: set[str] = set()
    for types, change in ((set(d.stack_types), stack_change), (d.guard_types, guard_change)):
        for token in types:
            row = actions_for(token)
            anywhere |= {*row.create, *row.read}
            (change if row.taggable else anywhere).update(row.change)
    for actions in d.edge.values():
        for action in actions:
            service, verb = action.split(":", 1)
            if service == "dynamodb":  # the guard's ledger, audit and locks: its own table
                guard_change.add(action)
            elif service == REACH_SERVICE:
                reach.add(action)
            elif service in UNTAGGED_SERVICES or verb.startswith(READ_VERBS + CREATE_VERBS):
                anywhere.add(action)
            else:
                stack_change.add(action)
    passed = sorted({PASSED_TO[t] for t in {*d.stack_types, *d.guard_types} if t in PASSED_TO})
    statements = [
        {"Sid": "CreateAndRead", "Effect": "Allow", "Action": sorted(anywhere),
         "Resource": "*"},
        {"Sid": "ChangeOnlyStackResources", "Effect": "Allow", "Action": sorted(stack_change),
         "Resource": "*", "Condition": {"Null": {f"aws:ResourceTag/{T.STACK}": "false"}}},
        {"Sid": "ChangeOnlyTheGuard", "Effect": "Allow", "Action": sorted(guard_change),
         "Resource": "*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GUARD_TAG[0]}": GUARD_TAG[1]}}},
    ]
    statements += [{"Sid": f"{action.split(':', 1)[1]}OnlyToStackNodes", "Effect": "Allow",
                    "Action": [action], "Resource": "*", "Condition": reach_conditions(action)}
                   for action in sorted(reach)]
    if passed:
        statements.append({"Sid": "PassRolesToTheirServices", "Effect": "Allow",
                           "Action": ["iam:PassRole"], "Resource": "*",
                           "Condition": {"StringEquals": {"iam:PassedToService": passed}}})
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s["Action"]]}


# A customer managed policy holds at most 6,144 characters, whitespace not counted (IAM and
# AWS STS quotas, "Managed policy size"); the derived policy is split to fit.
MANAGED_POLICY_MAX_CHARS = 6144


def _chars(document: dict) -> int:
    import json

    return len(json.dumps(document, separators=(",", ":")))


def split_documents(document: dict, limit: int = MANAGED_POLICY_MAX_CHARS) -> list[dict]:
    """``document`` as few managed policies as fit ``limit``: statements packed in order, a
    statement too big for one policy split by its actions (Sid numbered)."""
    def doc(statements: list[dict]) -> dict:
        return {"Version": document["Version"], "Statement": statements}

    pieces: list[dict] = []
    for statement in document["Statement"]:
        if _chars(doc([statement])) <= limit:
            pieces.append(statement)
            continue
        actions, part, n = list(statement["Action"]), [], 1
        for action in actions:
            trial = {**statement, "Sid": f"{statement['Sid']}{n}", "Action": [*part, action]}
            if part and _chars(doc([trial])) > limit:
                pieces.append({**statement, "Sid": f"{statement['Sid']}{n}", "Action": part})
                part, n = [], n + 1
            part.append(action)
        pieces.append({**statement, "Sid": f"{statement['Sid']}{n}", "Action": part})
    documents: list[list[dict]] = [[]]
    for piece in pieces:
        if documents[-1] and _chars(doc([*documents[-1], piece])) > limit:
            documents.append([])
        documents[-1].append(piece)
    return [doc(statements) for statements in documents]


def iam_policies(project: Path) -> list[dict]:
    """The deploying user's policy for ``project``, as managed policies that each fit."""
    return split_documents(policy_document(derive(project)))
