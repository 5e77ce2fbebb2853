"""``dsinfra plan STACK``: every resource a stack would create, its cost, and its budget check.

Offline by default (the real Pulumi program under mocks: no AWS account, no Pulumi CLI);
``--live`` asks ``pulumi preview`` instead. A plan over budget is shown loudly but still exits
0: planning is safe, and ``dsinfra up`` is where the budget is enforced.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

# Inputs worth a glance per resource type; everything is in --json.
_KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("cidrBlock", "availabilityZone"),
    "aws:ec2/instance:Instance": ("instanceType", "associatePublicIpAddress", "ami"),
    "aws:ec2/placementGroup:PlacementGroup": ("strategy",),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("serviceName", "vpcEndpointType"),
    "aws:lb/loadBalancer:LoadBalancer": ("loadBalancerType", "internal"),
    "aws:lb/targetGroup:TargetGroup": ("port", "protocol"),
    "aws:lb/listener:Listener": ("port", "protocol"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "pulumi:providers:aws": ("region",),
}


@app.command("plan")
def plan_command(
    stack: str = typer.Argument(..., help="Stack name: stacks/Pulumi.<STACK>.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    live: bool = typer.Option(False, "--live", help="Use `pulumi preview` (needs the Pulumi "
                              "CLI and AWS credentials) instead of the offline run."),
    enforcer: Optional[str] = typer.Option(
        None, "--enforcer", metavar="guard|schedule|none", help="Plan with the enforcer "
        "`up` would be given (default: guard)."),
    no_enforcer: bool = typer.Option(False, "--no-enforcer", help="Plan as `up "
                                     "--no-enforcer`: nothing would act on the budget or TTL."),
) -> None:
    """Show what STACK would create and cost per hour and month, checked against its budget,
    and the enforcer that would act on it (and when that last ran)."""
    from dsinfra.ops.enforcer import choose
    from dsinfra.ops.plan import build_plan

    choice = choose(enforcer, no_enforcer)
    if as_json:
        from dsinfra.cli.output import print_json
        from dsinfra.infra.inbound import inbound_rules

        plan = build_plan(stack, live=live)
        print_json({**plan.to_json(), "inbound_rules": inbound_rules(plan.resources),
                    "enforcer": plan_enforcer(plan.config, choice).to_dict()})
        return
    from dsinfra.cli.output import console

    with console(stderr=True).status(f"planning stack {stack} "
                                     f"({'pulumi preview' if live else 'offline'})..."):
        plan = build_plan(stack, live=live)
        view = plan_enforcer(plan.config, choice)
    render_plan(plan)
    print_enforcer(view)


def plan_enforcer(config, choice: tuple[str, str]):
    """What would enforce this stack's budget and TTL, and when it last ran: read from the
    audit log, the ledger and the guard's own heartbeat (ops/enforcer.py)."""
    from dsinfra.ops import enforcer as E

    return E.for_plan(config.stack, config.region, choice[0], choice[1], E.local_sources())


def print_enforcer(view, stderr: bool = False) -> None:
    """The enforcer line; a loud warning line when nothing covers the stack or it is stale."""
    from dsinfra.cli.output import console

    out = console(stderr=stderr)
    out.print(view.line(), markup=False)
    if view.warning and view.loud:
        console(stderr=True).print(f"warning: {view.warning}", markup=False,
                                   style="bold red")


def render_plan(plan) -> None:
    from rich.panel import Panel

    from dsinfra.cli.output import Col, console, print_table

    out = console()
    config = plan.config
    mode = "offline: the Pulumi program under mocks" if plan.offline else "pulumi preview"
    print_table([Col("type"), Col("name"), Col("key inputs", wraps=True)],
                [[res["type"], res["name"], key_inputs(res)] for res in plan.resources],
                title=f"stack {config.stack}: tier {config.tier}, {config.region} "
                      f"({len(plan.resources)} resources, {mode})", title_justify="left",
                out=out)
    _print_inbound(plan, out)
    _print_cost(plan, out)
    _print_replicas(plan, out)
    if plan.spot:
        out.print(_spot_text(plan.spot))
    out.print(Panel(_budget_text(plan), title="budget",
                    border_style="green" if plan.fits_budget else "bold red"))
    out.print(_weights_text(plan.weights))
    if advice := plan.cheaper_fit:
        out.print(Panel(_cheaper_text(advice), title="cheaper fit", border_style="yellow"))
    for note in plan.notes:
        out.print(note, style="dim")


def _print_inbound(plan, out) -> None:  # noqa: ANN001 - a rich Console
    from dsinfra.cli.output import Col, print_table
    from dsinfra.infra.inbound import inbound_rules

    rules = inbound_rules(plan.resources)
    title = f"inbound rules ({len(rules)}): who can reach what"
    if not rules:
        out.print(title)
        return
    print_table([Col("security group"), Col("protocol"), Col("ports"), Col("source"),
                 Col("why", wraps=True)],
                [[rule["group"], rule["protocol"], rule["ports"], rule["source"],
                  rule["description"]] for rule in rules],
                title=title, title_justify="left", out=out)


def _print_cost(plan, out) -> None:  # noqa: ANN001 - a rich Console
    from dsinfra.cli.output import Col, print_table

    rows = []
    for item in plan.items:
        quantity = f"{item.quantity:g} x " if item.quantity != 1 else ""
        rows.append([f"{item.name} ({item.note})" if item.note else item.name,
                     f"{quantity}${item.unit_usd:g}/{item.unit}", f"{item.hourly_usd:,.4f}",
                     f"{item.monthly_usd:,.2f}", item.as_of.isoformat()])
    print_table([Col("item", wraps=True, footer="total"), Col("quantity x unit price"),
                 Col("$/hour", justify="right", footer=f"{plan.hourly_usd:,.4f}"),
                 Col("$/month", justify="right", footer=f"{plan.monthly_usd:,.2f}"),
                 Col("price date")], rows,
                title=f"cost (prices as of {plan.prices_as_of}, 730 h month)",
                title_justify="left", out=out)


def replica_rows(view: dict) -> list[tuple[str, dict]]:
    """min, max and, where max does not fit, the cap: (label, priced count)."""
    rows = [("min", view["at_min"]), ("max", view["at_max"])]
    if view["capped_at"] is not None:
        rows.append(("cap", view["at_cap"]))
    return rows


def _print_replicas(plan, out) -> None:  # noqa: ANN001 - a rich Console
    """Min and max replicas each priced, shown where the stack sets dsinfra:replicas (every
    plan's --json carries the view)."""
    from dsinfra.cli.output import Col, print_table

    view = plan.replicas
    if view is None or not view["configured"]:
        return
    verdicts = {"min": "fits" if view["fits_at_min"] else "OVER BUDGET",
                "max": "fits" if view["fits_at_max"] else "over: capped",
                "cap": "largest that fits"}
    rows = [[label, str(at["replicas"]), str(at["nodes"]), f"{at['hourly_usd']:,.4f}",
             f"{at['monthly_usd']:,.2f}", f"${at['compared_usd']:,.2f}", verdicts[label]]
            for label, at in replica_rows(view)]
    print_table([Col("replicas"), Col("count", justify="right"),
                 Col("nodes", justify="right"), Col("$/hour", justify="right"),
                 Col("$/month", justify="right"), Col("compared", justify="right"),
                 Col("budget", wraps=True)], rows,
                title=f"replicas (a replica: {view['nodes_per_replica']} node(s) at "
                      f"${view['replica_hourly_usd']:,.4f}/hour; shared once: "
                      f"${view['shared_hourly_usd']:,.4f}/hour)", title_justify="left",
                out=out)


def replicas_line(view: dict, amount_usd: float) -> str:
    """What the budget panel says about replicas: max fits, or the cap the autoscaler keeps."""
    at_max = view["at_max"]
    if view["fits_at_max"]:
        return (f"Replicas: max {view['max']} fits (${at_max['compared_usd']:,.2f} "
                f"{view['budget_basis']}); the autoscaler may scale to it.")
    return (f"Replicas: max {view['max']} does NOT fit (${at_max['compared_usd']:,.2f} "
            f"{view['budget_basis']}, over the ${amount_usd:,.2f} budget): the autoscaler "
            f"is capped at {view['capped_at']} replica(s), the largest count that fits, and "
            "never scales past it.")


def _spot_text(quote) -> str:
    """A spot stack's price now beside the on-demand one the cost table counts (a ceiling)."""
    on_demand = f"on-demand ${quote.on_demand_hourly_usd:,.4f}/hour per node"
    if quote.spot_hourly_usd is None:
        return f"spot: {quote.note}; {on_demand} is counted above."
    return (f"spot: ${quote.spot_hourly_usd:,.4f}/hour per node now ({quote.saving_pct:g}% "
            f"below {on_demand}; {quote.source}, {quote.as_of}). The cost above counts "
            "on-demand: a spot price can rise to it.")


def _budget_text(plan) -> str:
    budget, config, fit = plan.config.budget, plan.config, plan.budget_fit
    verdict = "fits" if fit.fits else "OVER BUDGET"
    lines = [f"{verdict}: ${fit.compared_usd:,.2f} {fit.basis} against "
             f"${budget.amount_usd:,.2f} per {budget.period} (on exceed: {budget.on_exceed}"
             f"{', protected: notify only' if config.protect else ''})."]
    if config.ttl_hours is not None and not fit.ttl_enforced:
        lines.append(f"The {config.ttl_hours:g} h TTL does not bound spend: when it runs out "
                     "the guard only notifies (onExceed notify, or a protected stack).")
    lines += _block_lines(config)
    if (view := plan.replicas) is not None and view["configured"] and view["fits_at_min"]:
        lines.append(replicas_line(view, budget.amount_usd))
    lines.append(_idle_text(plan.idle_autostop))
    if (stop := _stop_text(plan.stop_means)):
        lines.append(stop)
    if not fit.fits:
        lines.append("`dsinfra up` will refuse this stack: lower nodeCount or instanceType, "
                     "set ttlHours with onExceed stop or destroy, or raise budget.amountUsd.")
    return "\n".join(lines)


def _block_lines(config) -> list[str]:
    from dsinfra.blocks import UNKNOWN_OFFLINE

    block, reservation = config.capacity_block, config.capacity_reservation_id
    if reservation is None:
        return []
    if block is None:
        return [f"Reservation {reservation}: {UNKNOWN_OFFLINE} (`dsinfra doctor` reads it)."]
    upfront = (f"${block.upfront_usd:,.2f} paid up front, counted in the budget"
               if block.upfront_usd is not None else
               "[bold red]upfront price unknown[/bold red] (set "
               "dsinfra:capacityBlock.upfrontUsd; `dsinfra up` refuses until then)")
    return [f"Capacity Block {reservation}: {block.instance_count}x {block.instance_type} in "
            f"{block.availability_zone}, {block.window()}; {upfront}; torn down at "
            f"{block.teardown_at:%Y-%m-%d %H:%M} UTC (AWS terminates from 30 minutes before "
            "the end)."]
def _stop_text(means: dict) -> str | None:
    """Said only where a stop does not simply stop: nodes AWS cannot stop are terminated."""
    if not means["terminates"]:
        return None
    nodes = ", ".join(t["node"] for t in means["terminates"])
    it = "it" if len(means["terminates"]) == 1 else "them"
    return (f"Stop terminates {nodes}: AWS cannot stop {it} ({means['terminates'][0]['why']})."
            f" A stop ({', '.join(means['by'])}) notifies, then terminates; lost: "
            f"{means['lost']}. Still billed after it: ${means['still_bills_hourly_usd']:,.4f}"
            f"/hour ({', '.join(means['still_bills']) or 'nothing'}). dsinfra:spotInterruption"
            " stop (the default) launches spot that a stop stops.")


def _idle_text(idle: dict) -> str:
    if idle["minutes"] is None:
        return f"Idle autostop: off ({idle['source']}; dsinfra:idleMinutes turns it on)."
    then = "stop the stack, volumes kept" if idle["on_idle"] == "stop" else \
        "notify only (protected stack)"
    return (f"Idle autostop: after {idle['minutes']} min without a request, {then} "
            f"({idle['source']}; dsinfra:idleMinutes 0 turns it off).")


def _weights_text(weights) -> str:
    size = f"{weights.size_gb:,.0f} GB" if weights.size_gb is not None else "size unknown"
    text = f"weights: {weights.model} ({size}) from {weights.source}, {weights.nodes} node(s)"
    if not weights.through_nat:
        return text + ", no NAT data charge"
    charge = weights.nat_usd_per_deploy
    if charge is None:
        return text + f" through the NAT gateway: {weights.note}"
    return (text + f" through the NAT gateway: ${charge:,.2f} per deploy "
            f"(${weights.nat_usd_per_gb:g}/GB); set dsinfra:modelCache to an S3 mirror to "
            "avoid it")


def _cheaper_text(advice) -> str:
    now, cheaper = advice.current, advice.cheaper
    return (f"{cheaper.nodes}x {cheaper.instance_type} also holds this model and context: "
            f"${cheaper.hourly_usd:,.2f}/h (${cheaper.monthly_usd:,.0f}/month) against "
            f"{now.nodes}x {now.instance_type} at ${now.hourly_usd:,.2f}/h "
            f"(${now.monthly_usd:,.0f}/month), saving ${advice.saving_hourly_usd:,.2f}/h. "
            + _kept_text(advice.kept_because))


def _kept_text(reasons) -> str:
    """Why the stack keeps its size (sizing.KEEP_RULES, then dsinfra:fitReason), or the
    plain offer. A stack file's reason is the user's text: escaped, never rich markup."""
    from rich.markup import escape

    if not reasons:
        return "The stack is unchanged: set dsinfra:instanceType and nodeCount to use it."
    return ("Kept: " + "; ".join(escape(r.rstrip(".")) for r in reasons) + ". To use it "
            "anyway, set dsinfra:instanceType and nodeCount.")


def key_inputs(resource: dict[str, Any]) -> str:
    """A one-line summary of the inputs that tell resources of a type apart."""
    inputs = resource.get("inputs") or {}
    token = resource["type"]
    if token == "aws:ec2/securityGroup:SecurityGroup":
        return _rules_summary(inputs)
    if token == "aws:ec2/launchTemplate:LaunchTemplate":
        return _template_summary(inputs)
    keys = _KEY_INPUTS.get(token, ())
    return ", ".join(f"{k}={inputs[k]}" for k in keys if inputs.get(k) is not None)


def _rules_summary(inputs: dict[str, Any]) -> str:
    parts = []
    for rule in inputs.get("ingress") or []:
        ports = "all" if rule.get("protocol") == "-1" else f"{rule.get('fromPort')}/tcp"
        sources = (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])
        if rule.get("securityGroups"):
            sources.append("group")
        if rule.get("self"):
            sources.append("self")
        parts.append(f"in {ports} from {' '.join(sources)}")
    return "; ".join(parts) or "no inbound"


def _template_summary(inputs: dict[str, Any]) -> str:
    metadata = inputs.get("metadataOptions") or {}
    parts = [f"imds tokens={metadata.get('httpTokens')}"]
    for mapping in inputs.get("blockDeviceMappings") or []:
        ebs = mapping.get("ebs") or {}
        parts.append(f"root {ebs.get('volumeSize')} GiB {ebs.get('volumeType')} "
                     f"encrypted={ebs.get('encrypted')}")
    interfaces = inputs.get("networkInterfaces") or []
    if interfaces:
        efa = sum(1 for i in interfaces if i.get("interfaceType") in ("efa", "efa-only"))
        parts.append(f"{len(interfaces)} interfaces ({efa} EFA)")
    if (inputs.get("instanceMarketOptions") or {}).get("marketType") == "spot":
        parts.append("spot")
    return ", ".join(parts)
