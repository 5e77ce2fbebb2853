"""Every inbound rule a plan would create, one row per source, so exposure is reviewable.

Pure over the resource dicts ``dsinfra plan`` lists (offline mocks or ``pulumi preview``):
inline ``ingress`` blocks of security groups and standalone rule resources alike."""

from __future__ import annotations

from typing import Any

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def inbound_rules(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{group, protocol, ports, source, description}`` for each source of each rule."""
    rows: list[dict[str, Any]] = []
    for res in resources:
        inputs = res.get("inputs") or {}
        if res["type"] == SECURITY_GROUP:
            for rule in inputs.get("ingress") or []:
                rows += _rows(res["name"], rule, _inline_sources(rule))
        elif res["type"] == SECURITY_GROUP_RULE and inputs.get("type") == "ingress":
            sources = (inputs.get("cidrBlocks") or []) + (inputs.get("ipv6CidrBlocks") or [])
            if inputs.get("sourceSecurityGroupId"):
                sources.append(f"security group {inputs['sourceSecurityGroupId']}")
            if inputs.get("self"):
                sources.append("itself")
            rows += _rows(res["name"], inputs, sources)
        elif res["type"] == INGRESS_RULE:
            sources = [inputs[k] for k in ("cidrIpv4", "cidrIpv6") if inputs.get(k)]
            if inputs.get("referencedSecurityGroupId"):
                sources.append(f"security group {inputs['referencedSecurityGroupId']}")
            rows += _rows(res["name"], {**inputs, "protocol": inputs.get("ipProtocol")}, sources)
    return rows


def _inline_sources(rule: dict[str, Any]) -> list[str]:
    sources = (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])
    sources += [f"security group {g}" for g in rule.get("securityGroups") or []]
    sources += [f"prefix list {p}" for p in rule.get("prefixListIds") or []]
    if rule.get("self"):
        sources.append("itself")
    return sources


def _rows(group: str, rule: dict[str, Any], sources: list[str]) -> list[dict[str, Any]]:
    protocol = str(rule.get("protocol") or "")
    if protocol in ("-1", "all"):
        protocol, ports = "all", "all"
    else:
        low, high = rule.get("fromPort"), rule.get("toPort")
        ports = str(low) if low == high else f"{low}-{high}"
    return [{"group": group, "protocol": protocol, "ports": ports, "source": source,
             "description": rule.get("description") or ""} for source in sources or ["(none)"]]
