"""``dsinfra plan``: what a stack would create, what it costs per hour and month, and whether
that fits its budget.

The resource list comes from the real program, run offline under mocks (``offline.py``) or,
with ``live``, from ``pulumi preview`` through ``automation.py``. Pricing is a pure function of
that list and the dated catalog, so both paths are priced by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date
from pathlib import Path
from typing import Any

from dsinfra.catalog import HOURS_PER_MONTH
from dsinfra.pricer import Described, price_parts
from dsinfra.config import StackConfig
from dsinfra.budget import BudgetFit
from dsinfra.costs import CostEstimate, CostItem, stack_budget_fit
from dsinfra.errors import DsinfraError, UserError

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AUTOSCALING_GROUP = "aws:autoscaling/group:Group"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
NOT_ESTIMATED = ("Not estimated: data processed by the NAT gateway ($/GB) other than the "
                 "weights' download (shown under weights), load balancer capacity units, data "
                 "transfer out, S3 requests.")


@dataclass(frozen=True)
class LineItem:
    """One priced thing: a resource, or a part of one (an instance's root volume or address)."""

    name: str
    type: str  # Pulumi type token of the resource it belongs to
    quantity: float
    unit: str  # "hour" or "GB-month"
    unit_usd: float
    hourly_usd: float
    as_of: date
    source: str
    note: str = ""
    billed_while_stopped: bool = True  # see CostItem
    assumed: bool = False  # the price is copied from another region (dsinfra.catalog says why)

    @property
    def monthly_usd(self) -> float:
        return round(self.hourly_usd * HOURS_PER_MONTH, 6)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "hourly_usd": self.hourly_usd,
                "monthly_usd": self.monthly_usd, "quantity": self.quantity,
                "unit": self.unit, "unit_usd": self.unit_usd,
                "price_as_of": self.as_of.isoformat(), "price_source": self.source,
                "price_assumed": self.assumed, "note": self.note}


def _items(name: str, token: str, described: Described) -> list[LineItem]:
    """The pricer's parts (dsinfra/pricer.py, the meter's pricer too) as plan's line items."""
    return [LineItem(f"{name} {p.part}" if p.part else name, token, p.quantity, p.price.unit,
                     p.price.usd, round(p.hourly_usd, 6), p.price.as_of, p.price.source,
                     p.note, p.billed_while_stopped, getattr(p.price, "assumed", False))
            for p in price_parts(described)]


def describe(res: dict[str, Any], resources: list[dict[str, Any]],
             region: str) -> list[Described]:
    """A Pulumi resource (``{type, name, inputs, parent}``) as the pricer describes what it
    bills: an instance is its compute (with an auto-assigned public IPv4) and its root volume;
    an internet-facing load balancer holds a public IPv4 per zone (subnet)."""
    token, inputs = res["type"], res.get("inputs") or {}
    if token == INSTANCE:
        template = _sibling_template(res, resources)
        market = ((template or {}).get("instanceMarketOptions") or {}).get("marketType")
        out = [Described("instance", region, instance_type=inputs.get("instanceType"),
                         market=market if market in ("spot", "capacity-block") else "on-demand",
                         public_ipv4=1 if inputs.get("associatePublicIpAddress") else 0)]
        root_gib = _root_volume_gib(inputs, template)
        if root_gib:
            out.append(Described("volume", region, size_gib=root_gib))
        return out
    if token == AUTOSCALING_GROUP:
        # The group's nodes boot from its sibling launch template; plan prices what `up`
        # launches (desiredCapacity, min at creation) and replica_costs one node of it.
        template = _sibling_template(res, resources) or {}
        count = int(inputs.get("desiredCapacity") or inputs.get("minSize") or 0)
        return [d for _ in range(count) for d in _template_node(template, region)]
    if token == NAT_GATEWAY:
        return [Described("nat_gateway", region)]
    if token == EIP:
        return [Described("address", region)]
    if token == LOAD_BALANCER:
        zones = len(inputs.get("subnets") or []) or 1
        return [Described("load_balancer", region,
                          public_ipv4=zones if inputs.get("internal") is False else 0)]
    return []


def _template_node(template: dict[str, Any], region: str) -> list[Described]:
    """One node a launch template launches: its compute (with a public IPv4 where its first
    interface asks for one) and its root volume."""
    market = (template.get("instanceMarketOptions") or {}).get("marketType")
    interfaces = template.get("networkInterfaces") or [{}]
    public = str(interfaces[0].get("associatePublicIpAddress")).lower() == "true"
    out = [Described("instance", region, instance_type=template.get("instanceType"),
                     market=market if market in ("spot", "capacity-block") else "on-demand",
                     public_ipv4=1 if public else 0)]
    root_gib = _root_volume_gib({}, template)
    if root_gib:
        out.append(Described("volume", region, size_gib=root_gib))
    return out


def price_resources(resources: list[dict[str, Any]], region: str,
                    context: list[dict[str, Any]] | None = None) -> list[LineItem]:
    """Price every billable resource; ``resources`` are ``{type, name, inputs, parent}``,
    ``context`` the whole program's (a node's launch template is its sibling there)."""
    items: list[LineItem] = []
    for res in resources:
        for described in describe(res, context if context is not None else resources,
                                  region):
            name = res["name"] if described.kind != "volume" else f"{res['name']} root volume"
            try:
                items += _items(name, res["type"], described)
            except KeyError:
                raise UserError(f"no price for instance type {described.instance_type!r} in "
                                f"{region}") from None
    return items


GPU_NODE_POOL = "dsinfra:nodes:GpuNodePool"


def _in_node_pool(res: dict[str, Any]) -> bool:
    """A resource of the GPU node pool: its parent's URN names a ``GpuNodePool`` component
    (``urn:pulumi:STACK::PROJECT::[PARENT$]dsinfra:nodes:GpuNodePool::NAME``)."""
    parent = res.get("parent") or ""
    return "::" in parent and parent.split("::")[-2].split("$")[-1] == GPU_NODE_POOL


@dataclass(frozen=True)
class ReplicaCosts:
    """The stack priced per replica count (issue 27): what is shared (network, NAT gateway,
    load balancer, endpoint, bastion) counted once, and a replica (``nodes_per_replica``
    nodes of the GPU node pool, each with what the pricer bills for it: compute, public IPv4,
    root volume) counted per replica. Both come from the program's own resources and the one
    pricer (``describe`` -> ``price_parts``); nothing here is a price rule of its own."""

    bounds: Any  # dsinfra.replicas.ReplicaBounds
    nodes_per_replica: int
    shared: tuple[LineItem, ...]
    node: tuple[LineItem, ...]  # one node of the pool: the head as the program declares it

    @property
    def node_hourly_usd(self) -> float:
        return sum(i.hourly_usd for i in self.node)

    @property
    def shared_hourly_usd(self) -> float:
        return sum(i.hourly_usd for i in self.shared)

    @property
    def replica_hourly_usd(self) -> float:
        return self.node_hourly_usd * self.nodes_per_replica

    def items_at(self, replicas: int) -> list[LineItem]:
        """The priced items of the stack running ``replicas`` replicas."""
        return [*self.shared, *(self.node * (replicas * self.nodes_per_replica))]

    def hourly_at(self, replicas: int) -> float:
        return round(sum(i.hourly_usd for i in self.items_at(replicas)), 6)

    def estimate_at(self, replicas: int, notes: list[str] | None = None) -> CostEstimate:
        items = self.items_at(replicas)
        return CostEstimate([CostItem(i.name, i.type, i.hourly_usd, i.note,
                                      i.billed_while_stopped) for i in items],
                            min((i.as_of for i in items), default=date.today()),
                            list(notes or []))


def replica_costs(config: StackConfig, resources: list[dict[str, Any]],
                  region: str) -> ReplicaCosts | None:
    """The stack's resources split into shared and one node of the GPU node pool (which
    resources scale is read from the program: the pool's children), or None where the
    resources name no pool node to price (a preview without parents)."""
    from dsinfra.replicas import nodes_per_replica, replica_bounds

    pool = [r for r in resources if _in_node_pool(r)]
    nodes = [r for r in pool if r["type"] == INSTANCE]
    # An Auto Scaling group's replica: one node of the group (priced by `describe` at one).
    nodes += [{**r, "inputs": {**(r.get("inputs") or {}), "desiredCapacity": 1}}
              for r in pool if r["type"] == AUTOSCALING_GROUP]
    if not nodes:
        return None
    shared = [r for r in resources if not _in_node_pool(r)]
    return ReplicaCosts(replica_bounds(config), nodes_per_replica(config),
                        tuple(price_resources(shared, region, context=resources)),
                        tuple(price_resources(nodes[:1], region, context=resources)))


def _sibling_template(instance: dict[str, Any], resources: list[dict[str, Any]]):
    """The launch template of a node: its sibling under the same GpuNodePool component."""
    for res in resources:
        if res["type"] == LAUNCH_TEMPLATE and res.get("parent") == instance.get("parent"):
            return res.get("inputs") or {}
    return None


def _root_volume_gib(inputs: dict[str, Any], template: dict[str, Any] | None) -> float:
    root = inputs.get("rootBlockDevice") or {}
    if root.get("volumeSize"):
        return root["volumeSize"]
    mappings = (template or {}).get("blockDeviceMappings") or []
    return sum((m.get("ebs") or {}).get("volumeSize") or 0 for m in mappings)


@dataclass
class Plan:
    config: StackConfig
    offline: bool
    resources: list[dict[str, Any]]
    items: list[LineItem]
    outputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=lambda: [NOT_ESTIMATED])
    containers: list[dict[str, Any]] = field(default_factory=list)  # per node role
    spot: Any = None  # a SpotQuote (ops/spot_price.py) for a spot stack, else None

    def __post_init__(self) -> None:
        assumed = sorted({i.name for i in self.items if i.assumed})
        if assumed:
            self.notes = [*self.notes, (
                f"ASSUMED prices in {self.config.region}: {', '.join(assumed)} are priced as "
                "in us-east-1 (no source for this region in the bundled snapshot); `dsinfra "
                f"catalog refresh --region {self.config.region}` reads the real prices.")]

    @property
    def hourly_usd(self) -> float:
        return round(sum(i.hourly_usd for i in self.items), 6)

    @property
    def monthly_usd(self) -> float:
        return round(sum(i.monthly_usd for i in self.items), 6)

    @property
    def prices_as_of(self) -> date | None:
        return min((i.as_of for i in self.items), default=None)

    @cached_property
    def replica_costs(self) -> ReplicaCosts | None:
        return replica_costs(self.config, self.resources, self.config.region)

    def replica_fit(self, replicas: int) -> BudgetFit:
        """The one budget rule (``stack_budget_fit``) over the stack at ``replicas``."""
        assert self.replica_costs is not None
        return stack_budget_fit(self.config, self.replica_costs.estimate_at(replicas))

    @cached_property
    def replicas(self) -> dict[str, Any] | None:
        """Min and max replicas, each priced and held to the budget, and the cap: the largest
        count that fits (``replicas_within_budget``), which the autoscaler never scales past.
        None where the resources name no node to price (a preview without parents)."""
        from dsinfra.replicas import replicas_within_budget

        costs = self.replica_costs
        if costs is None:
            return None
        bounds, per = costs.bounds, costs.nodes_per_replica
        fits: dict[int, BudgetFit] = {}

        def fit(n: int) -> BudgetFit:
            if n not in fits:
                fits[n] = self.replica_fit(n)
            return fits[n]

        largest = replicas_within_budget(bounds, lambda n: fit(n).fits)

        def at(n: int) -> dict[str, Any]:
            items = costs.items_at(n)
            return {"replicas": n, "nodes": n * per, "hourly_usd": costs.hourly_at(n),
                    "monthly_usd": round(sum(i.monthly_usd for i in items), 6),
                    "compared_usd": round(fit(n).compared_usd, 2), "fits": fit(n).fits}

        verdict = ("fits at max" if largest == bounds.max else
                   "capped" if largest is not None else "min over budget")
        return {"configured": self.config.replicas is not None,
                "min": bounds.min, "max": bounds.max, "fixed": bounds.fixed,
                "cool_down_s": bounds.cool_down_s, "target_waiting": bounds.target_waiting,
                "nodes_per_replica": per,
                "scales": [i.name for i in costs.node], "shared": [i.name for i in costs.shared],
                "node_hourly_usd": round(costs.node_hourly_usd, 6),
                "replica_hourly_usd": round(costs.replica_hourly_usd, 6),
                "shared_hourly_usd": round(costs.shared_hourly_usd, 6),
                "at_min": at(bounds.min), "at_max": at(bounds.max),
                "at_cap": at(largest) if largest is not None and largest < bounds.max
                else None,
                "budget_basis": fit(bounds.max).basis,
                "fits_at_min": fit(bounds.min).fits, "fits_at_max": fit(bounds.max).fits,
                "capped_at": largest if largest is not None and largest < bounds.max else None,
                "verdict": verdict}

    @property
    def estimate(self) -> CostEstimate:
        """The same numbers in the shared cost record other commands use. A stack with
        ``dsinfra:replicas`` is estimated at its min replicas: what ``up`` launches and what
        ``doctor`` and ``up`` hold to the budget (its max is plan's replicas view)."""
        if self.config.replicas is not None and self.replica_costs is not None:
            return self.replica_costs.estimate_at(self.config.replicas.min, list(self.notes))
        return CostEstimate([CostItem(i.name, i.type, i.hourly_usd, i.note,
                                      i.billed_while_stopped) for i in self.items],
                            self.prices_as_of or date.today(), list(self.notes))

    @property
    def budget_fit(self) -> BudgetFit:
        """The budget rule ``doctor`` and ``up`` apply too (``dsinfra.budget.budget_fit``)."""
        return stack_budget_fit(self.config, self.estimate)

    @property
    def fits_budget(self) -> bool:
        return self.budget_fit.fits

    @property
    def weights(self):
        """Where each node's weights come from, their size and the NAT data charge."""
        from dsinfra.weights import weights_download

        return weights_download(self.config)

    @property
    def cheaper_fit(self):
        """A cheaper size that holds the same model and context (advice; stack unchanged).
        None on a Capacity Block: its instances are paid for, on-demand prices do not apply."""
        from dsinfra.sizing import cheaper_fit

        if self.config.capacity_block is not None:
            return None

        return cheaper_fit(self.config)

    @property
    def idle_autostop(self) -> dict[str, Any]:
        """Idle autostop as configured: minutes (None: off), what happens then (a protected
        stack is only notified, as the budget guard treats it) and where the value came from."""
        from dsinfra.budget import STOP, exceeded_action

        minutes = self.config.resolved_idle_minutes
        return {"minutes": minutes,
                "on_idle": exceeded_action(STOP, self.config.protect) if minutes else None,
                "source": "tier default" if self.config.idle_minutes is None else "stack file",
                "notify_topic_arn": self.config.notify_topic_arn}

    @property
    def stop_means(self) -> dict[str, Any]:
        """What a stop (onExceed stop, idle autostop, `dsinfra stop`) does to this stack's
        nodes, from the program's launch templates, the rule of what AWS stops
        (dsinfra/stoppable.py) and the stop row of the action table: the nodes it stops, the
        ones it terminates instead (one-time spot) with why, what that loses and what still
        bills after it."""
        from dsinfra import budget_actions as A
        from dsinfra import stoppable as R
        from dsinfra.budget import exceeded_action

        verdicts = []
        for res in self.resources:
            if res["type"] != INSTANCE:
                continue
            template = _sibling_template(res, self.resources) or {}
            roots = [(m.get("ebs") or {}) for m in template.get("blockDeviceMappings") or []]
            instance, request = R.planned_instance(
                res["name"], template.get("instanceMarketOptions"),
                any(str(r.get("deleteOnTermination")).lower() == "true" for r in roots))
            verdicts.append(R.verdict(instance, request))
        row = A.get(A.STOP)
        ended = [v for v in verdicts if v.kind == R.TERMINATE] if row.unable == "terminate" \
            else []
        gone = {v.instance.id for v in ended}
        still = [i for i in self.items if i.billed_while_stopped and
                 not any(i.name.startswith(f"{node} root volume") for node in gone)]
        budget = self.config.budget.on_exceed
        by = [f"onExceed {budget}" for s in A.stopping() if s.name == budget and
              exceeded_action(budget, self.config.protect) == budget]
        if self.idle_autostop["on_idle"] == A.STOP:
            by.append("idle autostop")
        by.append("`dsinfra stop --terminate-spot`" if ended else "`dsinfra stop`")
        return {"by": by, "stops": [v.instance.id for v in verdicts if v.kind == R.STOP],
                "terminates": [{"node": v.instance.id, "why": v.why} for v in ended],
                "lost": R.lost_with(ended) if ended else None,
                "still_bills": [i.name for i in still],
                "still_bills_hourly_usd": round(sum(i.hourly_usd for i in still), 6)}

    def to_json(self) -> dict[str, Any]:
        budget, fit = self.config.budget, self.budget_fit
        return {
            "stack": self.config.stack, "tier": self.config.tier, "region": self.config.region,
            "offline": self.offline,
            "resources": [{"type": r["type"], "name": r["name"], "inputs": r.get("inputs") or {},
                           "parent": r.get("parent", "")} for r in self.resources],
            "cost": {"hourly_usd": self.hourly_usd, "monthly_usd": self.monthly_usd,
                     "hours_per_month": HOURS_PER_MONTH,
                     "items": [i.as_dict() for i in self.items],
                     "prices_as_of": self.prices_as_of.isoformat() if self.prices_as_of else None,
                     "notes": self.notes},
            "budget": {"amount_usd": budget.amount_usd, "period": budget.period,
                       "on_exceed": budget.on_exceed, "warn_at": budget.warn_at,
                       "protect": self.config.protect, "ttl_hours": self.config.ttl_hours,
                       "ttl_enforced": fit.ttl_enforced,
                       "compared_hours": fit.window_hours, "running_hours": fit.running_hours,
                       "compared_usd": round(fit.compared_usd, 2), "fits": fit.fits},
            "replicas": self.replicas,
            "idle_autostop": self.idle_autostop,
            "stop_means": self.stop_means,
            "outputs": self.outputs,
            "containers": self.containers,
            "weights": self.weights.to_dict(),
            "cheaper_fit": fit_advice.to_dict() if (fit_advice := self.cheaper_fit) else None,
            "capacity_block": capacity_block_view(self.config),
            "spot": self.spot.as_dict() if self.spot else None,
            "cold_start": cold_start_view(self.config),
        }


def refuse_replicas_over_budget(plan: Plan) -> None:
    """The door (plan, doctor, up): a stack with ``dsinfra:replicas`` whose budget cannot
    hold its min replicas is bad input, one line naming the value and what fits (the
    autoscaler could never start it within budget). A max over budget is not refused:
    the autoscaler is capped at what fits, and plan says so."""
    from dsinfra.errors import ConfigError
    from dsinfra.replicas import ReplicaBounds, replicas_within_budget

    bounds = plan.config.replicas
    if bounds is None:
        return
    if plan.replica_costs is None:
        # Money fails safe: a replica that cannot be priced is never taken as fitting.
        raise DsinfraError(
            f"cannot price a replica of stack {plan.config.stack!r}: the plan names no "
            f"instance under a {GPU_NODE_POOL} component (ops/plan.py replica_costs reads "
            "which resources scale from there); nothing was compared to the budget")
    at_min = plan.replica_fit(bounds.min)
    if at_min.fits:
        return
    value = bounds.min if bounds.fixed else {"min": bounds.min, "max": bounds.max}
    budget = plan.config.budget
    held = f"${budget.amount_usd:,.2f} per {budget.period}"
    fitting = replicas_within_budget(ReplicaBounds(1, bounds.min - 1),
                                     lambda n: plan.replica_fit(n).fits) \
        if bounds.min > 1 else None
    allowed = (f"at most {fitting} replica(s) within the budget {held}" if fitting else
               f"none: the budget {held} holds no replica")
    raise ConfigError("dsinfra:replicas", value, (
        f"{allowed} ({bounds.min} replica(s) compare at ${at_min.compared_usd:,.2f} "
        f"{at_min.basis}); lower the min or raise dsinfra:budget.amountUsd"))


def cold_start_view(config: StackConfig) -> dict[str, Any] | None:
    """Predicted time from a scale-out decision to a healthy replica, stage by stage with
    each stage's source (dsinfra/cold_start.py); None where the model cannot be sized."""
    from dsinfra.cold_start import predict_for_config

    predicted = predict_for_config(config)
    return predicted.to_dict() if predicted else None


def capacity_block_view(config: StackConfig) -> dict[str, Any] | None:
    """The block's window and upfront fee for plan and doctor, or what is not known offline."""
    from dsinfra.blocks import UNKNOWN_OFFLINE

    if config.capacity_reservation_id is None:
        return None
    if config.capacity_block is None:
        return {"capacity_reservation_id": config.capacity_reservation_id,
                "note": f"{UNKNOWN_OFFLINE}: launched as an On-Demand Capacity Reservation "
                        "unless `dsinfra up` finds a Capacity Block (or set "
                        "dsinfra:capacityBlock)"}
    view = {"capacity_reservation_id": config.capacity_reservation_id,
            **config.capacity_block.to_dict()}
    if config.capacity_block.upfront_usd is None:
        view["note"] = ("upfront price unknown: AWS returns none for a bought block; set "
                        "dsinfra:capacityBlock.upfrontUsd to what was paid")
    return view


def build_plan(stack: str, *, live: bool = False, project_dir: Path | None = None,
               engine=None, ec2_for=None) -> Plan:
    """Validate the stack, list its resources (offline or through ``pulumi preview``), price
    them and compare with the budget. Raises ``UserError`` for bad input (exit 2)."""
    from dsinfra.stackfiles import find_project_dir, load_stack, read_stack_values, stack_file

    from dsinfra.sizing import check_stack_fits

    project = project_dir or find_project_dir()
    config = load_stack(stack, project)
    check_stack_fits(config)
    _refuse_ttl_past_block(config)
    if live:
        from dsinfra.infra.automation import PulumiEngine

        preview = (engine or PulumiEngine(project)).preview(stack)
        resources, outputs = list(preview.resources), {}
    else:
        run = _run_offline(stack, read_stack_values(stack_file(stack, project)))
        resources = [{**r.as_dict(), "parent": r.parent} for r in run.resources]
        outputs = run.outputs
    plan = Plan(config=config, offline=not live, resources=resources,
                items=price_resources(resources, config.region), outputs=outputs,
                containers=engine_containers(config, outputs),
                spot=_spot_quote(config, live, ec2_for))
    refuse_replicas_over_budget(plan)
    return plan


def _spot_quote(config: StackConfig, live: bool, ec2_for):
    """Beside the on-demand ceiling the items show: the spot price now (live), or cached."""
    if not config.spot:
        return None
    from dsinfra.cloud.catalog_cache import load_cached_prices
    from dsinfra.ops.spot_price import spot_quote
    from dsinfra.paths import state_dir

    _prices, cached = load_cached_prices(state_dir())
    return spot_quote(config, live=live, cached=cached, ec2_for=ec2_for)


def plan_for_config(config: StackConfig) -> Plan:
    """The offline plan of a config that need not come from a stack file (doctor, up)."""
    values = config.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude={"stack"})
    run = _run_offline(config.stack, values)
    resources = [{**r.as_dict(), "parent": r.parent} for r in run.resources]
    return Plan(config=config, offline=True, resources=resources,
                items=price_resources(resources, config.region), outputs=run.outputs,
                containers=engine_containers(config, run.outputs))


def engine_containers(config: StackConfig, outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each node role's engine container as bootstrap will render it; empty without the
    nodes' outputs (``--live``: a preview has no outputs)."""
    from dsinfra.bootstrap.containers import containers
    from dsinfra.bootstrap.hosts import hosts_from_outputs
    from dsinfra.outputs import StackOutputs

    if not outputs.get("nodes"):
        return []
    return containers(config, hosts_from_outputs(StackOutputs.from_dict(outputs),
                                                 key_path=None))


def _refuse_ttl_past_block(config: StackConfig) -> None:
    from datetime import datetime, timezone

    from dsinfra.blocks import ttl_problem
    from dsinfra.errors import ConfigError

    if problem := ttl_problem(config, datetime.now(timezone.utc)):
        raise ConfigError(f"dsinfra:{problem[0]}", problem[1], problem[2])


def _run_offline(stack: str, values: dict[str, Any]):
    import pulumi

    from dsinfra.infra.offline import run_offline

    try:
        return run_offline(stack, values)
    except pulumi.RunError as exc:
        raise UserError(str(exc)) from None
