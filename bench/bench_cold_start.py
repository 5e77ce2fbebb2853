"""Cold start on the test twin: time from a scale-out decision to a healthy replica, stage by
stage, the same stages dsinfra/cold_start.py predicts for AWS (issue 27, item 5). Needs root.

    sudo .venv/bin/python bench/bench_cold_start.py --runs 5 [--shards 4 --shard-mb 64]

Per run:
1. ``launch``: autoscaling SetDesiredCapacity(+1) on the moto server, until the group lists the
   new instance InService and EC2 says it is running. moto launches at once: this times the
   API path (the decision reaching AWS), not a VM boot.
2. ``boot``: the replica's host (an sshd test host, tests/bootstrap/hostlab.py) comes up from
   baked state: baked once before the runs by a full bootstrap (fabric's steps, as
   ``dsinfra image bake`` does), then per run an EC2 stop/start (``TestHost.stop_start``:
   every process ends, the instance store comes back blank, the root volume keeps the
   installed engine) with its sshd down; timed from starting sshd to SSH-able.
3. ``weights`` (the bootstrap's model-cache and model-weights steps: the blank instance store
   formatted and mounted, the mirror copied from moto S3 on the lab's link-local service
   address, SHA-256 verified) and ``engine_load`` (engine-image, engine, health: the engine
   unit started as user data would start it, then the fake engine's load, until its health
   path answers). The step times come from the bootstrap's own report; the other steps'
   checks on the baked host are ``bootstrap_checks``.
4. ``health_gate``: from the engine's first 200 until a poller that asks the health path every
   ``--interval`` seconds from the moment the instance was InService (as an NLB starts
   checking a registered target) has seen ``HEALTHY_THRESHOLD`` 200s in a row.

The twin's times are not AWS's: moto launches instantly, the host boots as a process, the
mirror is moto on the same 2 cores, and the fake engine "loads" for the seconds its profile
says (``--engine-load-s``). What the twin shows is the orchestration's own overhead and which
stage dominates once the physics is taken out. Prints one JSON object (medians of the runs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "bootstrap"), str(ROOT / "bench"), str(ROOT)]

from bench_model_cache import _snapshot  # noqa: E402 - weights-like files (random bytes)
from hostlab import USER, HostLab  # noqa: E402
from tests.motoserver import start as start_moto  # noqa: E402
from tests.motoserver import stop as stop_moto  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
BUCKET = "bench-cold-start"
MIRROR = f"s3://{BUCKET}/mirror"
GROUP = "bench-replicas"
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
WEIGHT_STEPS = ("model-cache", "model-weights")
ENGINE_STEPS = ("engine-image", "engine", "health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=64)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="the twin's health-check interval, s (AWS's target group: 15)")
    parser.add_argument("--engine-load-s", type=float, default=0.3,
                        help="how long the fake engine answers 503 after it starts")
    args = parser.parse_args()
    os.environ.setdefault("DSINFRA_API_KEY", "dsk-bench-0123456789abcdef")
    base = Path(tempfile.mkdtemp(prefix="dsinfra-bench-cold-"))
    lab = HostLab(base)
    proc, url = start_moto(lab.service_ip)
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        print(json.dumps(run(lab, base, url, args), indent=1))
    finally:
        stop_moto(proc)
        lab.close()
        shutil.rmtree(base, ignore_errors=True)


def _group(url: str) -> tuple:
    """A launch template and an Auto Scaling group of 0 on moto, as the replicas' group."""
    from dsinfra.cloud.aws import client

    ec2, autoscaling = client("ec2", "us-east-1"), client("autoscaling", "us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    user_data = base64.b64encode(b"#!/bin/sh\nsystemctl start dsinfra-engine\n").decode()
    template = ec2.create_launch_template(
        LaunchTemplateName=GROUP, LaunchTemplateData={
            "ImageId": image, "InstanceType": "g5.2xlarge", "UserData": user_data}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=100, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        VPCZoneIdentifier=subnet)
    return ec2, autoscaling


def _scale_out(ec2, autoscaling, desired: int) -> tuple[float, str]:
    """SetDesiredCapacity, then wait for the new instance InService and running."""
    started = time.perf_counter()
    autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=desired,
                                     HonorCooldown=False)
    while True:
        group = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        ready = [i["InstanceId"] for i in group["Instances"]
                 if i["LifecycleState"] == "InService"]
        if len(ready) >= desired:
            newest = ready[-1]
            state = ec2.describe_instances(InstanceIds=[newest])["Reservations"][0][
                "Instances"][0]["State"]["Name"]
            if state == "running":
                return time.perf_counter() - started, newest
        time.sleep(0.05)


class Gate(threading.Thread):
    """An NLB-style check: GET the health path every ``interval`` s from the start; healthy
    after ``threshold`` 200s in a row. Records when the first 200 and the gate came."""

    def __init__(self, url: str, interval: float, threshold: int) -> None:
        super().__init__(daemon=True)
        self.url, self.interval, self.threshold = url, interval, threshold
        self.first_ok: float | None = None
        self.passed: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        streak = 0
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    ok = answer.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            now = time.perf_counter()
            streak = streak + 1 if ok else 0
            if ok and self.first_ok is None:
                self.first_ok = now
            if streak >= self.threshold:
                self.passed = now
                return
            self.stop.wait(self.interval)


def run(lab: HostLab, base: Path, url: str, args) -> dict:
    import yaml

    from dsinfra.bootstrap.remote import SshSettings
    from dsinfra.bootstrap.runner import BootstrapOptions, bootstrap_inventory
    from dsinfra.cloud.model_cache import push
    from dsinfra.cold_start import HEALTHY_THRESHOLD
    from dsinfra.config import parse_stack_config
    from dsinfra.cloud.aws import client

    client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory(prefix="dsinfra-bench-snapshot-") as tmp:
        pushed = push(_snapshot(Path(tmp), args.shards, args.shard_mb), MIRROR, MODEL,
                      region="us-east-1")
    ec2, autoscaling = _group(url)
    host = lab.fresh("replica", "g5.2xlarge")
    host.set_profile(engine_load_s=args.engine_load_s)
    values = {"engine": "vllm", "model": MODEL, "modelCache": MIRROR}
    inventory = base / "replica.yaml"
    inventory.write_text(yaml.safe_dump({"config": values, "hosts": [{
        "name": host.name, "address": host.listen, "user": USER, "key": str(lab.client_key),
        "role": "head", "instance_type": host.instance_type,
        "host_key": host.host_key_line()}]}))
    config = parse_stack_config("hosts", {"tier": "dev", "budget": {"amountUsd": 0},
                                          "nodeCount": 1, **values})
    health_url = f"http://{host.address}:{config.resolved_api_port}{config.engine.health_path}"
    options = BootstrapOptions(state_dir=base / "state", console_pins=False,
                               ssh=SshSettings(backoff_s=0.3, ssh_wait_s=30, reboot_wait_s=60),
                               health_timeout_s=120, health_poll_s=0.2, health_report_s=1.0,
                               node_aws={"endpoint_url": url, **KEYS})

    def bootstrap():
        report = bootstrap_inventory(inventory, progress=False, options=options)
        if not report.ok:
            failed = report.hosts[0].failed_step
            raise SystemExit(f"bootstrap failed: {failed.step}: {failed.detail}\n"
                             f"{failed.output_tail}")
        return report

    started = time.perf_counter()
    bootstrap()  # the bake: fabric bootstraps one node from a plain image
    bake_s = time.perf_counter() - started
    rows = []
    for index in range(args.runs):
        host.stop_start()  # the baked image on a new instance: processes gone, store blank
        shutil.rmtree(host.root / "fs" / "opt" / "dsinfra" / "cache", ignore_errors=True)
        host.stop_sshd()
        launch_s, _ = _scale_out(ec2, autoscaling, index + 1)
        registered = time.perf_counter()  # InService: the NLB starts checking the target
        gate = Gate(health_url, args.interval, HEALTHY_THRESHOLD)
        gate.start()
        host.start_sshd()  # returns once sshd listens
        boot_s = time.perf_counter() - registered
        report = bootstrap()
        steps = {s.step: s.duration_s for s in report.hosts[0].steps}
        gate.join(timeout=120)
        gate.stop.set()
        if gate.passed is None:
            raise SystemExit("the health gate never passed")
        weights_s = sum(steps.get(s, 0.0) for s in WEIGHT_STEPS)
        engine_s = sum(steps.get(s, 0.0) for s in ENGINE_STEPS)
        checks_s = report.duration_s - weights_s - engine_s
        rows.append({
            "launch": launch_s, "boot": boot_s, "bootstrap_checks": checks_s,
            "weights": weights_s, "engine_load": engine_s,
            "health_gate": gate.passed - gate.first_ok,
            "total": launch_s + (gate.passed - registered),
            "applied": [s.step for s in report.hosts[0].steps if s.status == "applied"]})
    stages = ("launch", "boot", "bootstrap_checks", "weights", "engine_load", "health_gate",
              "total")
    medians = {k: round(statistics.median(r[k] for r in rows), 3) for k in stages}
    parts = {k: v for k, v in medians.items() if k != "total"}
    return {
        "runs": args.runs, "bytes": pushed.bytes_total, "files": pushed.files,
        "interval_s": args.interval, "healthy_threshold": HEALTHY_THRESHOLD,
        "engine_load_s_profile": args.engine_load_s, "bake_s": round(bake_s, 2),
        "median_s": medians, "dominant": max(parts, key=parts.get),
        "weights_mb_per_s": round(pushed.bytes_total / 1e6 / medians["weights"], 1),
        "per_run_s": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                      for r in rows],
        "cpus": os.cpu_count(), "load_average_at_end": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    main()
