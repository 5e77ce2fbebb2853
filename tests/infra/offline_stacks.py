"""Stacks the infra tests run: the shipped three and variants that exercise optional branches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsinfra.infra.offline import OfflineRun, run_offline
from dsinfra.stackfiles import read_stack_values, stack_file
from dsinfra.tiers import TIERS

PROJECT_DIR = Path(__file__).resolve().parents[2]
# One shipped stack per tier, named after it (stacks/Pulumi.<tier>.yaml): a new tier in TIERS
# gets every test that runs the shipped stacks, and fails them until its stack file exists.
SHIPPED = tuple(TIERS)
OFFICE = "203.0.113.0/24"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdsinfraTestKeyOnlyForMockedRunsXXXXXXXXXX test"

# A Capacity Block as DescribeCapacityReservations reports one (zone, type, count, window; the
# fee from dsinfra's purchase tag). Blocks end at 11:30 UTC (AWS's capacity-blocks-purchase).
BLOCK = {"availabilityZone": "us-east-1c", "instanceType": "p5.48xlarge", "instanceCount": 2,
         "start": "2030-01-07T11:30:00Z", "end": "2030-01-09T11:30:00Z", "upfrontUsd": 3801.6}

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
    # Launching into a Capacity Block (issue 17): its values as `dsinfra up` writes them.
    "dist-block": ("distributed", {"capacityReservationId": "cr-0b10c0000000000a1",
                                   "capacityBlock": BLOCK, "budget": {
                                       "amountUsd": 20000, "period": "total",
                                       "onExceed": "destroy"}, "ttlHours": None}),
    # prod spans two zones; the block's zone must hold every node (not round-robin).
    "prod-block": ("prod", {"capacityReservationId": "cr-0b10c0000000000a2",
                            "instanceType": "p5.48xlarge", "nodeCount": 2,
                            "capacityBlock": {**BLOCK, "availabilityZone": "us-east-1d"},
                            "budget": {"amountUsd": 20000, "period": "total",
                                       "onExceed": "destroy"}}),
    # Replicas (issue 27): dev's and prod's are one Auto Scaling group behind the load
    # balancer; a listener idle timeout past AWS's 3600 s deregistration maximum; dev spot
    # from one-time requests; distributed a fixed count of node groups.
    "dev-replicas": ("dev", {"replicas": {"min": 1, "max": 3, "coolDownS": 120}, "spot": True,
                             "spotInterruption": "terminate", "apiAllowedCidrs": [OFFICE],
                             "tags": {"team": "inference"}}),
    "prod-replicas": ("prod", {"replicas": {"min": 2, "max": 5}, "apiIdleTimeoutS": 6000,
                               "replicaImage": "ami-0123456789abcdef0"}),
    "dist-replicas": ("distributed", {"replicas": 2, "apiIdleTimeoutS": 900}),
}


REPLICA_STACKS = tuple(name for name, (_, values) in VARIANTS.items() if "replicas" in values)


def stack_values(base: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values = {**read_stack_values(stack_file(base, PROJECT_DIR)), **(overrides or {})}
    return {k: v for k, v in values.items() if v is not None}  # None: key removed


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
