"""Where the account has dsinfra stacks: every enabled region (EC2 ``DescribeRegions``), each
asked through the Resource Groups Tagging API's paginated ``GetResources`` for anything
carrying the ``dsinfra:stack`` key, every region at once (threads). The inventory then
describes only the regions that answered with something, so a stack started in a region nobody
configured is still metered, enforced and torn down, at one call per region when there is
nothing there. The cost check asks only whether a region holds anything (``complete=False``:
it stops at the first page that names a stack, usually one call) because its inventory lists
the region's resources anyway; listing them twice was most of a large check's API calls. Its
``partial`` regions name a sample of their stacks, and the check completes the list only for a
region whose inventory then fails (``complete_stacks``), so every stack there is still reported.

A region that cannot be asked is not "empty": it is returned in ``errors`` and the callers
report it (the cost check fails the stacks it cannot vouch for and exits 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dsinfra import tags as T
from dsinfra import waits
from dsinfra.cloud.aws import client, read_errors, require_keys

PERMISSIONS = ("ec2:DescribeRegions", "tag:GetResources")
# GetResources accepts at most 20 values per tag filter and 100 resources per page.
_MAX_FILTER_VALUES = 20
_PAGE_SIZE = 100
MAX_THREADS = 16  # regions asked at once (about 17 are enabled by default)


@dataclass
class Discovery:
    """What region discovery saw: the regions asked, the stacks each holds, what failed."""

    asked: tuple[str, ...]
    stacks_by_region: dict[str, set[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # region -> short error
    partial: set[str] = field(default_factory=set)  # regions whose stacks are a sample

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions holding at least one resource with the stack tag, in asked order."""
        return tuple(r for r in self.asked if self.stacks_by_region.get(r))

    @property
    def stacks(self) -> set[str]:
        return {s for found in self.stacks_by_region.values() for s in found}


def home_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def enabled_regions(home: str | None = None) -> tuple[str, ...]:
    """Every region enabled for the account (opted-in or not requiring opt-in)."""
    answer = client("ec2", home or home_region()).describe_regions(AllRegions=False)
    return tuple(sorted(r["RegionName"] for r in answer["Regions"]))


def _error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return code or type(exc).__name__


def stacks_in_region(region: str, stacks: Sequence[str] | None = None, *,
                     complete: bool = True) -> set[str]:
    """The stack names tagged on anything in ``region`` (only ``stacks`` when given).
    ``complete=False`` stops at the first page that names one (a page may come back empty
    with a token, so it pages on until then): enough to know the region holds something."""
    key_filter: dict = {"Key": T.STACK}
    if stacks is not None and len(stacks) <= _MAX_FILTER_VALUES:
        key_filter["Values"] = sorted(stacks)
    pages = client("resourcegroupstaggingapi", region).get_paginator("get_resources").paginate(
        TagFilters=[key_filter], ResourcesPerPage=_PAGE_SIZE)
    found: set[str] = set()
    for page in pages:
        require_keys(page, f"GetResources in {region}", "ResourceTagMappingList")
        for mapping in page["ResourceTagMappingList"]:
            for tag in mapping.get("Tags", []):
                if tag["Key"] == T.STACK and (stacks is None or tag["Value"] in stacks):
                    found.add(tag["Value"])
        if found and not complete:
            break
    return found


def discover(regions: Iterable[str] | None = None,
             stacks: Sequence[str] | None = None, *, complete: bool = True) -> Discovery:
    """Ask ``regions`` (every enabled region when None) which stacks they hold, all regions at
    once. Raises only when the region list itself cannot be read; a region that fails is in
    ``errors``. ``complete=False``: see the module's doc (``partial``)."""
    from concurrent.futures import ThreadPoolExecutor

    asked = tuple(regions) if regions else enabled_regions()
    found = Discovery(asked)

    def ask(region: str):
        try:
            return stacks_in_region(region, stacks, complete=complete), None
        except read_errors() as exc:
            return None, _error_text(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(asked)))) as pool:
        answers = waits.map_all(pool, ask, asked)
    for region, (here, error) in zip(asked, answers):
        if error is not None:
            found.errors[region] = error
        elif here:
            found.stacks_by_region[region] = here
            if not complete:
                found.partial.add(region)
    return found


def complete_stacks(found: Discovery, region: str, stacks: Sequence[str] | None = None) -> None:
    """Finish a ``partial`` region's stack list (the check does this for a region whose
    inventory failed, so each stack there gets its ``failed`` report); a failure here leaves
    the sample and is the caller's to report."""
    if region not in found.partial:
        return
    try:
        found.stacks_by_region[region] = stacks_in_region(region, stacks)
        found.partial.discard(region)
    except read_errors():
        pass
