"""The IAM actions dsinfra's own boto3 calls need, read from this package's source: every
module here that makes ``client("<service>", ...)`` is scanned (AST, nothing executed) for
method calls and ``get_paginator("<op>")`` names that are operations of that service in
botocore's model, and each becomes ``<prefix>:<Operation>``. Modules that sign requests
themselves (the EICE tunnel's websocket) declare theirs in ``PERMISSIONS``, which is added.
Over-approximate by design (a name matching an operation counts), never silent about a call.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from dsinfra.shipping import parse_source

# boto3 service name -> IAM action prefix, where they differ.
IAM_PREFIX = {"elbv2": "elasticloadbalancing", "resourcegroupstaggingapi": "tag",
              "service-quotas": "servicequotas"}


# Operations whose IAM action has another name (Service Authorization Reference, S3).
ACTION_ALIASES = {"s3:HeadObject": "s3:GetObject", "s3:HeadBucket": "s3:ListBucket",
                  "s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket"}
# Where boto3 clients are made: this package only (ops/ and cli/ call none:
# tests/test_architecture.py holds them to it).
PACKAGES = ("dsinfra.cloud",)
CLIENT_MAKERS = ("client", "factory")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def _scan(path: Path) -> tuple[set[str], set[str], tuple[str, ...]]:
    """(services it makes clients of, names it calls as methods or paginators, PERMISSIONS)."""
    tree = parse_source(path)
    services: set[str] = set()
    called: set[str] = set()
    declared: tuple[str, ...] = ()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            literal = first.value if isinstance(first, ast.Constant) and isinstance(
                first.value, str) else None
            if name in CLIENT_MAKERS and literal:
                services.add(literal)
            elif name == "get_paginator" and literal:
                called.add(literal)
            elif isinstance(func, ast.Attribute):
                called.add(func.attr)
        elif isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "PERMISSIONS" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(value, (tuple, list)):
                declared = tuple(value)
    return services, called, declared


@lru_cache(maxsize=None)
def _operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name, from botocore's model."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def edge_actions() -> dict[str, list[str]]:
    """Module name -> the IAM actions its calls need, sorted."""
    found: dict[str, list[str]] = {}
    paths = [(package, path) for package in PACKAGES
             for path in sorted(_package_dir(package).glob("*.py"))]
    for package, path in paths:
        services, called, declared = _scan(path)
        actions = set(declared)
        for service in services:
            operations = _operations(service)
            prefix = IAM_PREFIX.get(service, service)
            actions |= {f"{prefix}:{operations[name]}" for name in called if name in operations}
        actions = {ACTION_ALIASES.get(a, a) for a in actions}
        if actions:
            found[f"{package}.{path.stem}"] = sorted(actions)
    return found
