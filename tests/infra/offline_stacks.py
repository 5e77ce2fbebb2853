"""Stacks the infra tests run: the shipped three and variants that exercise optional branches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsinfra.infra.offline import OfflineRun, run_offline
from dsinfra.stackfiles import read_stack_values, stack_file

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHIPPED = ("dev", "prod", "distributed")
OFFICE = "203.0.113.0/24"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdsinfraTestKeyOnlyForMockedRunsXXXXXXXXXX test"

# Stacks beyond the shipped three, each exercising one optional branch of the program.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dev-open": ("dev", {"sshAllowedCidrs": [OFFICE, "2001:db8::/32"],
                         "apiAllowedCidrs": [OFFICE], "sshPublicKey": SSH_KEY, "spot": True}),
    "prod-public-api": ("prod", {"apiAllowedCidrs": [OFFICE], "sshAllowedCidrs": [OFFICE],
                                 "nodeCount": 3, "availabilityZone": "us-east-1c",
                                 "apiIdleTimeoutS": 6000}),
    "prod-bastion": ("prod", {"bastion": True, "sshAllowedCidrs": [OFFICE]}),
    # The widest API exposure allowed: one /8's share of each address family (issue 13).
    "prod-wide-api": ("prod", {"apiAllowedCidrs": ["100.0.0.0/8", "2600::/8"]}),
    "dist-reserved": ("distributed", {"capacityReservationId": "cr-0123456789abcdef0",
                                      "instanceType": "p5en.48xlarge", "nodeCount": 3,
                                      "amiId": "ami-0fedcba9876543210",
                                      "tags": {"team": "inference"}}),
}


def stack_values(base: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**read_stack_values(stack_file(base, PROJECT_DIR)), **(overrides or {})}


def run_stack(name: str) -> OfflineRun:
    if name in SHIPPED:
        return run_offline(name, stack_values(name))
    base, overrides = VARIANTS[name]
    return run_offline(name, stack_values(base, overrides))


def tier_of(name: str) -> str:
    return name if name in SHIPPED else VARIANTS[name][0]


def config_of(name: str):
    from dsinfra.config import parse_stack_config

    base, overrides = (name, {}) if name in SHIPPED else VARIANTS[name]
    return parse_stack_config(name, stack_values(base, overrides))
