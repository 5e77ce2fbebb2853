"""`plan` shows every inbound rule with its source, in the table and in --json."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.infra.inbound import inbound_rules

from .conftest import VALID_STACK, write_stack

runner = CliRunner()


def test_plan_json_lists_each_source_of_each_inbound_rule(project):
    write_stack(project, "open", VALID_STACK + "  dsinfra:sshAllowedCidrs: [203.0.113.0/24, "
                "2001:db8::/32]\n  dsinfra:apiAllowedCidrs: [198.51.100.0/24]\n")
    result = runner.invoke(app, ["plan", "open", "--json"])
    assert result.exit_code == 0, result.output
    rules = json.loads(result.stdout)["inbound_rules"]
    node = {(r["ports"], r["source"]) for r in rules if r["group"] == "open-node"}
    # SSH and the API from the stack's EC2 Instance Connect Endpoint's group, and the CIDRs.
    endpoint = {(p, s) for p, s in node if s.startswith("security group sg-")}
    # The Instance Connect Endpoint carries port 22 only (issue 22): its group gets 22 alone.
    assert {p for p, _ in endpoint} == {"22"} and len({s for _, s in endpoint}) == 1
    assert node - endpoint == {("22", "203.0.113.0/24"), ("22", "2001:db8::/32"),
                               ("8000", "198.51.100.0/24")}
    assert all(r["protocol"] == "tcp" and r["description"] for r in rules)


def test_plan_table_shows_the_inbound_rules(project):
    write_stack(project, "open", VALID_STACK + "  dsinfra:sshAllowedCidrs: [203.0.113.0/24]\n")
    result = runner.invoke(app, ["plan", "open"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # The CIDR's rule and the Instance Connect Endpoint's SSH (the API travels inside SSH).
    assert "inbound rules (2)" in result.stdout and "203.0.113.0/24" in result.stdout
    assert "SSH from the EC2 Instance Connect Endpoint" in result.stdout


def test_group_references_self_and_standalone_rules_are_sources_too():
    resources = [
        {"type": "aws:ec2/securityGroup:SecurityGroup", "name": "efa", "inputs": {"ingress": [
            {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True,
             "description": "EFA"}]}},
        {"type": "aws:ec2/securityGroup:SecurityGroup", "name": "node", "inputs": {"ingress": [
            {"protocol": "tcp", "fromPort": 22, "toPort": 22, "securityGroups": ["sg-1"]}]}},
        {"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "r",
         "inputs": {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
                    "cidrIpv4": "0.0.0.0/0"}},
    ]
    assert [(r["group"], r["ports"], r["source"]) for r in inbound_rules(resources)] == [
        ("efa", "all", "itself"), ("node", "22", "security group sg-1"),
        ("r", "443", "0.0.0.0/0")]
