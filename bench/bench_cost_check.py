"""Benchmark: `dsinfra cost check --enforce` beside Cloud Custodian on the same moto server.

1,000 instances in 100 stacks (10 nodes each, instance and root volume tagged), every stack
over its budget with onExceed destroy, so both tools terminate all 1,000 instances. Each tool
runs as its own process against the same moto server, through a counting HTTP proxy on
loopback, from a freshly seeded state: wall time, AWS API requests, the tool's own CPU seconds
and moto's seconds are measured the same way for both. Then a pure simulation of overspend with a check every N minutes.

Usage:
    python -m venv /tmp/c7n-venv && /tmp/c7n-venv/bin/pip install c7n
    .venv/bin/python bench/bench_cost_check.py --custodian /tmp/c7n-venv/bin/custodian
(c7n pins boto3/botocore exactly, so it gets its own venv instead of dsinfra's.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cost.conftest import stack_tags  # noqa: E402
from tests.cost.proxy import FaultProxy  # noqa: E402
from tests.motoserver import start as start_moto  # noqa: E402
from tests.motoserver import stop as stop_moto  # noqa: E402

# c7n's usual form filters tags client-side; "server-side" asks EC2 to filter, as dsinfra does.
POLICIES = {
    "custodian": """policies:
  - name: dsinfra-stack-terminate
    resource: ec2
    filters:
      - "tag:dsinfra:stack": present
    actions:
      - terminate
""",
    "custodian_server_side_tag_filter": """policies:
  - name: dsinfra-stack-terminate
    resource: ec2
    query:
      - tag-key: dsinfra:stack
    filters:
      - "tag:dsinfra:stack": present
    actions:
      - terminate
""",
}


def seed(url: str, stacks: int, nodes: int) -> None:
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url,
                       aws_access_key_id="x", aws_secret_access_key="x")
    for n in range(stacks):
        tags = [{"Key": k, "Value": v} for k, v in
                stack_tags(f"stack-{n:03d}", budget_usd=1, period="total",
                           on_exceed="destroy").items()]
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=nodes, MaxCount=nodes,
                          InstanceType="g5.2xlarge",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                                             {"ResourceType": "volume", "Tags": tags}])


def live_instances(url: str) -> int:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url,
                       aws_access_key_id="x", aws_secret_access_key="x")
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}])
    return sum(len(r["Instances"]) for p in pages for r in p["Reservations"])


def _env(proxy_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=proxy_url, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
               AWS_DEFAULT_REGION="us-east-1", **extra)
    return env


def run_measured(proxy: FaultProxy, argv: list[str], env: dict[str, str]) -> dict:
    proxy.seen.clear()
    proxy.sent.clear()
    proxy.upstream_s.clear()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr[-2000:]}")
    # the tool's own CPU seconds (user + system; the moto server is not a waited-for child):
    # what the client costs, which load on a shared machine stretches but does not change
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall_s, 2), "client_cpu_s": round(cpu_s, 2),
            "api_calls": sum(proxy.seen.values()),
            "calls_by_action": dict(sorted(proxy.seen.items())),
            "server_s_by_action": {k: round(v, 2) for k, v in sorted(proxy.upstream_s.items())},
            "stdout": done.stdout}


def bench_dsinfra(url: str, proxy: FaultProxy, stacks: int, nodes: int, warm: bool) -> dict:
    """``warm``: the previous scheduled check (a dry run 15 minutes earlier, not measured) has
    run, as it has in steady state; cold: the very first check with an empty state dir."""
    seed(url, stacks, nodes)
    with tempfile.TemporaryDirectory() as state:
        env = _env(proxy.url, {"DSINFRA_STATE_DIR": state, "DSINFRA_REGIONS": "us-east-1"})
        check = [sys.executable, "-m", "dsinfra.cli", "cost", "check", "--json", "--now"]
        now = datetime.now(timezone.utc) + timedelta(hours=10)
        if warm:
            subprocess.run(check + [(now - timedelta(minutes=15)).isoformat()], env=env,
                           capture_output=True, check=True)
        result = run_measured(proxy, check + [now.isoformat(), "--enforce"], env)
    report = json.loads(result.pop("stdout"))
    outcomes = [s["action_result"] for s in report["stacks"]]
    result.update(stacks_destroyed=outcomes.count("done"), left_running=live_instances(url))
    return result


def bench_custodian(url: str, proxy: FaultProxy, custodian: str, stacks: int,
                    nodes: int, policy_text: str) -> dict:
    seed(url, stacks, nodes)
    with tempfile.TemporaryDirectory() as work:
        policy = Path(work) / "policy.yml"
        policy.write_text(policy_text)
        result = run_measured(proxy, [custodian, "run", "-s", str(Path(work) / "out"),
                                      "--cache-period", "0", "-r", "us-east-1", str(policy)],
                              _env(proxy.url, {}))
    result.pop("stdout")
    result["left_running"] = live_instances(url)
    return result


def overspend_simulation(hourly_usd: float, budget_usd: float, every_min: list[int],
                         trials: int = 500) -> list:
    """Pure: the real metering and decision code driven by a simulated clock. A stack burns
    ``hourly_usd`` from t0; checks run every ``every_min`` from a random phase, each metering
    the interval since the last (dsinfra.spend.new_interval) and deciding (dsinfra.budget.decide);
    at the first ``exceeded`` the stack stops. Overspend = spend at the stop - budget."""
    import random

    from dsinfra.budget import StackBudget, decide
    from dsinfra.spend import Resource, new_interval, overspend_bound_usd, spend_within

    t0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
    node = Resource("instance", "i-sim", "us-east-1", "sim", {}, "running", t0,
                    {"instance_type": "p5.48xlarge"})
    rule = StackBudget("sim", "distributed", budget_usd, "total", "stop", 0.8, False, None)
    rng, rows = random.Random(7), []
    for minutes in every_min:
        worst = 0.0
        for _ in range(trials):
            now, intervals, metered = t0 + timedelta(minutes=rng.uniform(0, minutes)), [], None
            while True:
                interval = new_interval(node, hourly_usd, metered, now)
                intervals.append(interval)
                metered = interval.end
                spent = spend_within(intervals, t0, now)
                if decide(rule, spent, now).status == "exceeded":
                    worst = max(worst, spent - budget_usd)
                    break
                now += timedelta(minutes=minutes)
        bound = overspend_bound_usd(hourly_usd, minutes)
        rows.append({"every_min": minutes, "worst_overspend_usd": round(worst, 2),
                     "bound_usd": round(bound, 2), "within_bound": worst <= bound + 1e-6})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--custodian", default=shutil.which("custodian"))
    parser.add_argument("--stacks", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated run names to keep")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds; each round runs every tool once, interleaved, so load "
                             "drift on a shared machine falls on all of them alike")
    args = parser.parse_args()
    keep = set(filter(None, args.only.split(",")))
    wanted = lambda name: not keep or name in keep  # noqa: E731
    load_at_start = round(os.getloadavg()[0], 2)
    moto, url = start_moto()
    proxy = FaultProxy(url)
    try:
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for name, warm in (("dsinfra_first_check", False), ("dsinfra_steady_state", True)):
                if wanted(name):
                    runs.setdefault(name, []).append(
                        bench_dsinfra(url, proxy, args.stacks, args.nodes, warm))
            for name, policy in POLICIES.items() if args.custodian else ():
                if wanted(name):
                    runs.setdefault(name, []).append(bench_custodian(
                        url, proxy, args.custodian, args.stacks, args.nodes, policy))
        results: dict = {"load_avg_1m_at_start": load_at_start,
                         "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
        for name, rounds in runs.items():
            walls = sorted(r["wall_s"] for r in rounds)
            cpus = sorted(r["client_cpu_s"] for r in rounds)
            results[name] = {**rounds[0], "wall_s": walls[len(walls) // 2],
                             "wall_s_all": [r["wall_s"] for r in rounds],
                             "client_cpu_s": cpus[len(cpus) // 2],
                             "client_cpu_s_all": [r["client_cpu_s"] for r in rounds],
                             "server_s_all": [round(sum(r["server_s_by_action"].values()), 2)
                                              for r in rounds]}
        results["overspend_p5_8_nodes"] = overspend_simulation(55.04 * 8, 10_000, [5, 15, 60])
        print(json.dumps(results, indent=2))
    finally:
        proxy.close()
        stop_moto(moto)


if __name__ == "__main__":
    main()
