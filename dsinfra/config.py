"""The one schema for every ``dsinfra:*`` stack config key.

Everything a stack file says is parsed here, before any resource, API call or SSH session
exists. A bad value becomes a single ``ConfigError`` naming the key, the value and what is
allowed; callers turn that into exit status 2.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_serializer,
                      field_validator, model_validator)

from dsinfra.blocks import CapacityBlock, block_fit_problem
from dsinfra import budget_actions
from dsinfra.budget import NOTIFY, PERIODS
from dsinfra.catalog import GPU_INSTANCE_TYPES, INSTANCE_SPECS, SUPPORTED_REGIONS
from dsinfra.engines import DEFAULT_ENGINE, engine_names, engine_spec, idle_engines
from dsinfra.errors import ConfigError
from dsinfra.idle import parse_idle_minutes
from dsinfra.identifiers import (aws_tag_key_problem, aws_tag_value_problem, exposure_problem,
                                 hf_repo_id_problem, host_text_problem, s3_uri_problem,
                                 sns_topic_arn_ok)
from dsinfra.replicas import ReplicaBounds, parse_replicas, replicas_problem
from dsinfra.tiers import TIER_NAMES, TIERS, TierSpec

# Literal[tuple] spells out the tuple's members: the names live in tiers.py and budget.py.
# Engine names (dsinfra/engines.py) and budget actions are read at validation time instead.
Tier = Literal[TIER_NAMES]  # type: ignore[valid-type]
Precision = Literal["bf16", "fp16", "fp8", "int8", "int4"]
BudgetPeriod = Literal[PERIODS]  # type: ignore[valid-type]
_PINNED_IMAGE = re.compile(r"[\w.\-/:]+(:[\w][\w.\-]{0,127}|@sha256:[0-9a-f]{64})", re.ASCII)
PINNED_IMAGE_ALLOWED = ("an image with a pinned tag or digest, e.g. vllm/vllm-openai:v0.11.0 "
                        "(not :latest, not untagged)")


def pinned_image_problem(value: object) -> str | None:
    """The one rule of an image dsinfra runs (engineImage, `deploy --image`): a pinned tag or
    digest, never :latest or untagged."""
    if not isinstance(value, str) or not _PINNED_IMAGE.fullmatch(value) \
            or value.endswith(":latest"):
        return PINNED_IMAGE_ALLOWED
    return None


_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,19}", re.ASCII)
SSH_PORT = 22
MAX_BUDGET_USD = 1_000_000_000
MAX_TTL_HOURS = 24 * 365 * 10
# Keys whose value is a number: YAML's `true` must not become 1.
_NUMERIC_KEYS = ("nodeCount", "maxModelLen", "apiPort", "ttlHours", "rootVolumeGiB",
                 "apiIdleTimeoutS")
_NUMERIC_BUDGET_KEYS = ("amountUsd", "warnAt")
_NUMERIC_ENGINE_KEYS = ("port", "gpuMemoryUtilization")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True,
                              allow_inf_nan=False)


def _refuse_booleans(values: Any, keys: tuple[str, ...], prefix: str = "") -> Any:
    for key in keys:
        if isinstance(values, dict) and isinstance(values.get(key), bool):
            raise _KeyedValueError(prefix + key, values[key], "a number, not true/false")
    return values


class BudgetConfig(_Model):
    amount_usd: float = Field(alias="amountUsd", ge=0, le=MAX_BUDGET_USD,
                              description="Spend limit in USD for the period")
    period: BudgetPeriod = Field("month", description="month: calendar month to date (UTC); "
                                 "total: since the stack's first resource")
    # a name from the action table (dsinfra/budget_actions.py), read at validation time
    on_exceed: str = Field(NOTIFY, alias="onExceed",
                           description="What the cost check does at or over budget")
    warn_at: float = Field(0.8, alias="warnAt", gt=0, le=1,
                           description="Fraction of the budget that triggers a warning")

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_booleans(cls, values: Any) -> Any:
        return _refuse_booleans(values, _NUMERIC_BUDGET_KEYS, "budget.")

    @field_validator("on_exceed")
    @classmethod
    def _known_action(cls, value: str) -> str:
        names = budget_actions.on_exceed()
        if value not in names:
            raise ValueError("Input should be " + ", ".join(repr(n) for n in names[:-1])
                             + f" or {names[-1]!r}")
        return value


class EngineConfig(_Model):
    """The inference server. ``custom`` runs any image, e.g. the article's own
    ``python3 serve.py --model_path /app/model --port 8080`` container."""

    # a name from the engine table (dsinfra/engines.py), read at validation time
    name: str = Field(DEFAULT_ENGINE, description="The inference engine")
    image: str | None = None
    command: list[str] | None = None
    port: int | None = Field(None, ge=1, le=65535)
    # unset: the engine's own (dsinfra/engines.py), filled in by _engine_defaults
    health_path: str = Field("/health", alias="healthPath", pattern=r"^/")
    extra_args: list[str] = Field(default_factory=list, alias="extraArgs")
    gpu_memory_utilization: float = Field(0.90, alias="gpuMemoryUtilization", gt=0.1, le=0.98,
                                          description="Share of each GPU's memory the engine "
                                          "may take (always passed explicitly)")

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_booleans(cls, values: Any) -> Any:
        return _refuse_booleans(values, _NUMERIC_ENGINE_KEYS, "engine.")

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, values: Any) -> Any:
        """An unset healthPath is the engine's own, so every reader sees the resolved one."""
        if isinstance(values, dict) and not {"healthPath", "health_path"} & set(values):
            name = values.get("name", DEFAULT_ENGINE)
            if isinstance(name, str) and name in engine_names():
                return {**values, "healthPath": engine_spec(name).health_path}
        return values

    @field_validator("name")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        names = engine_names()
        if value not in names:
            raise ValueError("Input should be " + ", ".join(repr(n) for n in names[:-1])
                             + f" or {names[-1]!r}")
        return value

    @field_validator("image", "health_path")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (problem := host_text_problem(value, max_chars=256)):
            raise ValueError(problem)
        return value

    @field_validator("command", "extra_args")
    @classmethod
    def _one_line_each(cls, value: list[str] | None) -> list[str] | None:
        for arg in value or ():
            if problem := host_text_problem(arg):
                raise ValueError(f"arguments that are each {problem.removeprefix('a ')}")
        if value is not None and len(value) > 256:
            raise ValueError("at most 256 arguments")
        return value

    @model_validator(mode="after")
    def _image_and_port_where_no_default(self) -> "EngineConfig":
        spec = engine_spec(self.name)
        if (spec.image is None and not self.image) or (spec.port is None and not self.port):
            raise ValueError(f"engine {self.name!r} needs image and port (command and "
                             "healthPath are optional)")
        return self


class FallbackAlternative(_Model):
    """One entry of ``dsinfra:fallback``: an instance type and node count that ``up`` may use
    when the stack's own type has no capacity; ``regions`` (default: the stack's region) are
    where it may run, tried after every option of the stack's own region."""

    instance_type: str = Field(alias="instanceType")
    node_count: int = Field(1, alias="nodeCount", ge=1, le=64)
    regions: list[str] = Field(default_factory=list, max_length=len(SUPPORTED_REGIONS))

    @field_validator("instance_type")
    @classmethod
    def _gpu_instance(cls, value: str) -> str:
        if value not in INSTANCE_SPECS or not INSTANCE_SPECS[value].has_gpus:
            raise ValueError(f"a GPU instance type from the catalog: "
                             f"{', '.join(GPU_INSTANCE_TYPES)}")
        return value

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if region not in SUPPORTED_REGIONS:
                raise ValueError(f"regions from {', '.join(SUPPORTED_REGIONS)} (the regions "
                                 "the price catalog covers)")
        return value


MAX_FALLBACKS = 8


class StackConfig(_Model):
    """All ``dsinfra:*`` keys of one stack. Field aliases are the keys as written in YAML."""

    # Safe as a file name (secrets/<stack>.api-key) and a tag value; the stricter Pulumi stack
    # grammar (validate_stack_name) applies to stack files, not to inventory names.
    stack: str = Field(description="The stack name (from the file name)",
                       pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    tier: Tier
    region: str = "us-east-1"
    instance_type: str | None = Field(None, alias="instanceType")
    node_count: int | None = Field(None, alias="nodeCount", ge=1, le=64)
    # Copies of the tier's serving unit behind the load balancer (dsinfra/replicas.py): an
    # integer, or {min, max} for autoscaling; None: the tier's one unit (nodeCount off EFA).
    replicas: ReplicaBounds | None = None
    model: str | None = None
    precision: Precision = "bf16"
    max_model_len: int = Field(8192, alias="maxModelLen", ge=256, le=1_048_576)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    engine_image: str | None = Field(None, alias="engineImage")
    api_port: int | None = Field(None, alias="apiPort", ge=1, le=65535)
    # The NLB listener's TCP idle timeout (AWS allows 60-6000 s, default 350 s): a
    # non-streaming reasoning request is silent for minutes before its first byte.
    api_idle_timeout_s: int = Field(3600, alias="apiIdleTimeoutS", ge=60, le=6000)
    # An S3 mirror of the weights in the stack's region (`dsinfra cache push` fills it).
    model_cache: str | None = Field(None, alias="modelCache")
    budget: BudgetConfig
    ttl_hours: float | None = Field(None, alias="ttlHours", gt=0, le=MAX_TTL_HOURS)
    protect: bool = False
    ssh_allowed_cidrs: list[str] = Field(default_factory=list, alias="sshAllowedCidrs")
    api_allowed_cidrs: list[str] = Field(default_factory=list, alias="apiAllowedCidrs")
    ssh_public_key: str | None = Field(None, alias="sshPublicKey")
    # Private tiers only: a bastion in a public subnet, reached from sshAllowedCidrs. Off by
    # default: every node is reached through the stack's EC2 Instance Connect Endpoint.
    bastion: bool = False
    root_volume_gib: int = Field(200, alias="rootVolumeGiB", ge=30, le=16384)
    ami_id: str | None = Field(None, alias="amiId", pattern=r"^ami-[0-9a-f]{8,17}$")
    # The image `dsinfra image bake` made from a bootstrapped replica (issue 27): the replicas'
    # launch template boots it, so a new replica serves without a fabric bootstrap.
    replica_image: str | None = Field(None, alias="replicaImage",
                                      pattern=r"^ami-[0-9a-f]{8,17}$")
    availability_zone: str | None = Field(None, alias="availabilityZone")
    spot: bool = False
    # What an interruption does to a spot node, and so which request it launches from
    # (dsinfra/stoppable.py SPOT_INTERRUPTION): stop (persistent; what `stop` can stop) or
    # terminate (one-time; a `stop` then terminates the node after a notice).
    spot_interruption: Literal["stop", "terminate"] = Field("stop", alias="spotInterruption")
    capacity_reservation_id: str | None = Field(None, alias="capacityReservationId",
                                                pattern=r"^cr-[0-9a-f]{8,17}$")
    # What capacityReservationId is when it names a Capacity Block (dsinfra/blocks.py).
    capacity_block: CapacityBlock | None = Field(None, alias="capacityBlock")
    fallback: list[FallbackAlternative] = Field(default_factory=list, max_length=MAX_FALLBACKS)
    # Idle autostop (dsinfra/idle.py): minutes without a request before the head node's
    # watcher stops the stack; None: the tier's default; 0: off.
    idle_minutes: int | None = Field(None, alias="idleMinutes")
    # An SNS topic the head node may publish to (idle autostop's notices); none: the journal.
    notify_topic_arn: str | None = Field(None, alias="notifyTopicArn")
    owner: str = "unknown"
    # Why the stack keeps its size against plan's cheaper-fit advice (plan prints it there).
    fit_reason: str | None = Field(None, alias="fitReason", min_length=1, max_length=400)
    tags: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime | None = Field(None, alias="expiresAt",
                                        description="Pinned by `dsinfra up` from ttlHours")

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_booleans(cls, values: Any) -> Any:
        fallback = values.get("fallback") if isinstance(values, dict) else None
        for index, alternative in enumerate(fallback if isinstance(fallback, list) else []):
            _refuse_booleans(alternative, ("nodeCount",), f"fallback.{index}.")
        return _refuse_booleans(values, _NUMERIC_KEYS)

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, value: Any) -> ReplicaBounds | None:
        if value is None or isinstance(value, ReplicaBounds):
            return value
        if problem := replicas_problem(value):
            raise _KeyedValueError(*problem)
        return parse_replicas(value)

    @field_serializer("replicas")
    def _replicas_as_written(self, value: ReplicaBounds | None) -> dict[str, Any] | None:
        """Dumped in the stack file's spelling, so a dumped config parses again (plan's and
        doctor's offline run of a config that is not a stack file dumps it)."""
        if value is None:
            return None
        return {"min": value.min, "max": value.max, "coolDownS": value.cool_down_s,
                "targetWaiting": value.target_waiting}

    @field_validator("idle_minutes", mode="before")
    @classmethod
    def _idle_minutes(cls, value: Any) -> int | None:
        return None if value is None else (parse_idle_minutes(value) or 0)

    @field_validator("fit_reason")
    @classmethod
    def _one_printable_line(cls, value: str | None) -> str | None:
        # plan prints it in a panel: one line of text, nothing a terminal would act on.
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("one line of printable text (why the stack keeps its size)")
        return value

    @field_validator("notify_topic_arn")
    @classmethod
    def _topic_arn(cls, value: str | None) -> str | None:
        if value is not None and not sns_topic_arn_ok(value):
            raise ValueError("an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:alerts")
        return value

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("capacity_block", mode="before")
    @classmethod
    def _block_from_json(cls, value: Any) -> Any:
        # `dsinfra up` stores it with `pulumi config set` (Automation API): one JSON string.
        if isinstance(value, str):
            import json

            try:
                if len(value) > 4096:  # what `up` writes is ~250 characters
                    raise ValueError("too long")
                return json.loads(value)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply
                raise ValueError("a mapping (availabilityZone, instanceType, instanceCount, "
                                 "start, end, upfrontUsd)") from None
        return value

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in SUPPORTED_REGIONS:
            raise ValueError(f"one of {', '.join(SUPPORTED_REGIONS)} (the regions the price "
                             "catalog covers)")
        return value

    @field_validator("instance_type")
    @classmethod
    def _gpu_instance(cls, value: str | None) -> str | None:
        if value is not None and (value not in INSTANCE_SPECS
                                  or not INSTANCE_SPECS[value].has_gpus):
            raise ValueError(f"a GPU instance type from the catalog: "
                             f"{', '.join(GPU_INSTANCE_TYPES)}")
        return value

    @field_validator("ssh_allowed_cidrs")
    @classmethod
    def _ssh_not_world(cls, value: list[str]) -> list[str]:
        for cidr in value:
            _parse_cidr("sshAllowedCidrs", cidr)
            if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                raise _KeyedValueError("sshAllowedCidrs", cidr,
                                       "CIDR blocks narrower than the whole internet (SSH is "
                                       "never opened to 0.0.0.0/0 or ::/0; dsinfra reaches "
                                       "nodes through the stack's EC2 Instance Connect "
                                       "Endpoint)")
        _bounded_exposure("sshAllowedCidrs", value)
        return value

    @field_validator("api_allowed_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            _parse_cidr("apiAllowedCidrs", cidr)
        _bounded_exposure("apiAllowedCidrs", value)
        return value

    @field_validator("model")
    @classmethod
    def _hf_repo_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := hf_repo_id_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("model_cache")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None and (problem := s3_uri_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("owner")
    @classmethod
    def _owner_tag_value(cls, value: str) -> str:
        if problem := aws_tag_value_problem(value, min_chars=1):
            raise ValueError(f"{problem} (it becomes the dsinfra:owner tag)")
        return value

    @field_validator("availability_zone")
    @classmethod
    def _zone_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9][a-z]", value):
            raise ValueError("an availability zone name such as us-east-1a")
        return value

    @field_validator("expires_at")
    @classmethod
    def _plausible_expiry(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 2000 <= value.year <= 2100:
            raise ValueError("a UTC time between the years 2000 and 2100, e.g. "
                             "2026-12-01T18:00:00Z")
        return value

    @field_validator("engine_image")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and (problem := pinned_image_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _openssh_key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
                r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?",
                value):
            raise ValueError("an OpenSSH public key line (ssh-ed25519 AAAA... or ssh-rsa AAAA...)")
        return value

    @field_validator("tags")
    @classmethod
    def _user_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if key.lower().startswith(("dsinfra:", "aws:")):
                raise _KeyedValueError("tags", key, "tag keys outside the reserved dsinfra: "
                                       "and aws: prefixes")
            if problem := aws_tag_key_problem(key):
                raise _KeyedValueError("tags", key, problem)
            if problem := aws_tag_value_problem(tag_value):
                raise _KeyedValueError(f"tags.{key}", tag_value, problem)
        if len(value) > 40:
            raise ValueError("at most 40 user tags (AWS allows 50 per resource, dsinfra uses 10)")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "StackConfig":
        if self.spot and not self.tier_spec.spot_allowed:
            allowed = ", ".join(t.name for t in TIERS.values() if t.spot_allowed)
            raise _KeyedValueError("spot", self.spot,
                                   f"true only on the {allowed} tier (the others run "
                                   "on-demand or on a capacity reservation)")
        if self.spot_interruption != "stop" and not self.spot:
            raise _KeyedValueError("spotInterruption", self.spot_interruption,
                                   "stop (the default) unless spot is true")
        if self.bastion and not self.tier_spec.bastion:
            allowed = ", ".join(t.name for t in TIERS.values() if t.bastion)
            raise _KeyedValueError("bastion", self.bastion,
                                   f"true only on the {allowed} tiers (dev nodes have their "
                                   "own address; every tier is reached through its EC2 "
                                   "Instance Connect Endpoint)")
        if self.availability_zone and not self.availability_zone.startswith(self.region):
            raise _KeyedValueError("availabilityZone", self.availability_zone,
                                   f"an availability zone of region {self.region}, e.g. "
                                   f"{self.region}a")
        for port_key, port in (("apiPort", self.api_port), ("engine.port", self.engine.port)):
            if port == SSH_PORT:
                raise _KeyedValueError(port_key, port, f"a port other than {SSH_PORT} (SSH): "
                                       "the API's CIDRs must never open SSH")
        if self.fallback and self.capacity_reservation_id:
            raise _KeyedValueError("fallback", [a.instance_type for a in self.fallback],
                                   "no fallback together with capacityReservationId (the "
                                   "reservation fixes the type and the zone)")
        if self.replicas is not None and not self.tier_spec.efa and self.node_count not in (None, 1):
            raise _KeyedValueError("nodeCount", self.node_count,
                                   f"1 or unset together with replicas: on the {self.tier} tier "
                                   "a replica is one node, so dsinfra:replicas sets the count")
        if self.replicas is not None and self.tier_spec.efa and not self.replicas.fixed:
            raise _KeyedValueError("replicas.min", self.replicas.min,
                                   f"equal to replicas.max ({self.replicas.max}) on the "
                                   f"{self.tier} tier: a replica there is a node group that "
                                   "one engine spans over EFA, and an Auto Scaling group "
                                   "launches and replaces single instances, never a ranked "
                                   "group (docs/replicas.md)")
        if self.replicas is not None and self.spot and self.spot_interruption != "terminate":
            raise _KeyedValueError("spotInterruption", self.spot_interruption,
                                   "terminate together with replicas and spot: an Auto "
                                   "Scaling group launches spot from one-time requests only "
                                   "and replaces an interrupted replica itself")
        if self.replica_image and self.replicas is None:
            raise _KeyedValueError("replicaImage", self.replica_image,
                                   "a value only together with replicas (the image the "
                                   "replicas' launch template boots; dsinfra image bake)")
        if self.idle_minutes and self.engine.name not in idle_engines():
            raise _KeyedValueError("idleMinutes", self.idle_minutes,
                                   f"off (0) for engine {self.engine.name}: idle autostop "
                                   f"reads the metrics of {' and '.join(idle_engines())}")
        if self.capacity_reservation_id and self.spot:
            raise _KeyedValueError("capacityReservationId", self.capacity_reservation_id,
                                   "no capacity reservation together with spot")
        if self.capacity_block and not self.capacity_reservation_id:
            raise _KeyedValueError("capacityBlock", self.capacity_block.availability_zone,
                                   "a value only together with capacityReservationId (the "
                                   "Capacity Block it describes)")
        if problem := block_fit_problem(self):
            raise _KeyedValueError(*problem)
        return self

    @property
    def tier_spec(self) -> TierSpec:
        return TIERS[self.tier]

    # Tier defaults are derived rather than stored so a stack file stays minimal.
    @property
    def resolved_instance_type(self) -> str:
        return self.instance_type or self.tier_spec.default_instance_type

    @property
    def resolved_node_count(self) -> int:
        return self.node_count or self.tier_spec.default_node_count

    @property
    def resolved_model(self) -> str:
        return self.model or self.tier_spec.default_model

    @property
    def resolved_engine_image(self) -> str:
        return self.engine_image or self.engine.image or engine_spec(self.engine.name).image

    @property
    def resolved_idle_minutes(self) -> int | None:
        """Minutes without a request before the stack stops itself; None: off. The tier's
        default applies to the engines whose metrics the watcher reads."""
        if self.idle_minutes is None:
            return self.tier_spec.idle_minutes if self.engine.name in idle_engines() else None
        return self.idle_minutes or None

    @property
    def engine_port(self) -> int:
        return self.engine.port or engine_spec(self.engine.name).port

    @property
    def resolved_api_port(self) -> int:
        return self.api_port or self.engine_port

    def expiry(self, now: datetime | None = None) -> datetime | None:
        """When the stack's TTL runs out: the pinned ``expiresAt``, else now + ``ttlHours``,
        else, on a Capacity Block, 60 minutes before the block ends."""
        if self.expires_at is not None:
            return self.expires_at if self.expires_at.tzinfo else \
                self.expires_at.replace(tzinfo=timezone.utc)
        if self.ttl_hours is None:
            return self.capacity_block.teardown_at if self.capacity_block else None
        return (now or datetime.now(timezone.utc)) + timedelta(hours=self.ttl_hours)


class _KeyedValueError(ValueError):
    """A cross-field rule that knows which key it is about."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(allowed)
        self.key, self.value, self.allowed = key, value, allowed


def _bounded_exposure(key: str, cidrs: list[str]) -> None:
    if problem := exposure_problem(cidrs):
        raise _KeyedValueError(key, cidrs, problem)


def _parse_cidr(key: str, cidr: str) -> None:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except (ValueError, TypeError):
        raise _KeyedValueError(key, cidr, "CIDR blocks such as 203.0.113.0/24 or 2001:db8::/32 "
                               "(host bits zero)") from None


# Display names for fields, in the user's spelling.
_ALIASES: dict[str, str] = {
    name: (field.alias or name) for name, field in StackConfig.model_fields.items()
}
CONFIG_KEYS: tuple[str, ...] = tuple(a for n, a in _ALIASES.items() if n != "stack")


def validate_stack_name(stack: str, *, source: str | None = None) -> None:
    """Names of Pulumi stacks dsinfra deploys: AWS resource names are derived from them."""
    if not _STACK_NAME.fullmatch(stack):
        raise ConfigError("stack name", stack,
                          "1-20 letters, digits or hyphens, starting with a letter or digit "
                          "(AWS load balancer names are at most 32 characters and Pulumi adds "
                          "a suffix)", source=source)


def parse_stack_config(stack: str, values: dict[str, Any], *, source: str | None = None
                       ) -> StackConfig:
    """Validate the ``dsinfra:*`` values (namespace already stripped) of one stack."""
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        key = unknown[0]
        raise ConfigError(f"dsinfra:{key}", values[key],
                          f"known keys are {', '.join(CONFIG_KEYS)}", source=source)
    try:
        return StackConfig.model_validate({"stack": stack, **values})
    except ValidationError as exc:
        raise _config_error(exc, values, source) from None


def _config_error(exc: ValidationError, values: dict[str, Any], source: str | None) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedValueError):
        return ConfigError(f"dsinfra:{ctx_error.key}", ctx_error.value, ctx_error.allowed,
                           source=source)
    path = [str(p) for p in error["loc"]]
    # Drop pydantic's union/validator tags so the key reads as the user wrote it.
    path = [p for p in path if not p.startswith(("function-", "tagged-union"))]
    key = "dsinfra:" + ".".join(path) if path else "dsinfra:<stack>"
    value: Any = values
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = error.get("input")
            break
    allowed = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        allowed = "a value is required for this key"
        value = None
    return ConfigError(key, value, allowed, source=source)
