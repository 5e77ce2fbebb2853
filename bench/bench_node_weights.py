"""The node-side weights copy (bootstrap's ``model-weights`` step: ``dsinfra.cloud.model_cache
fetch`` from the node kit, on the node's own python3) against a plain ``aws s3 cp --recursive``
of the same objects, both run on one sshd test host (tests/bootstrap/hostlab.py) and reading
the same moto S3 server on the lab's link-local service address, as a node reads S3 through its
gateway endpoint (issue 15, item 3; target: at least as fast). Needs root.

    python3 -m venv .venv-bench-awscli && .venv-bench-awscli/bin/pip install awscli
    sudo .venv/bin/python bench/bench_node_weights.py --shards 4 --shard-mb 128 --runs 3

Runs alternate (ours, aws, ours, aws, ...); each into a fresh folder on the host (no resume
shortcut), under /var/tmp: the machine's disk, not the lab's 1 GB tmpfs. Prints one JSON
object."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "bootstrap"), str(ROOT / "bench"), str(ROOT)]

from bench_model_cache import _snapshot  # noqa: E402 - the same weights-like files
from hostlab import USER, HostLab  # noqa: E402
from tests.motoserver import start as start_moto  # noqa: E402
from tests.motoserver import stop as stop_moto  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"
BUCKET = "bench-weights"
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def _connect(lab: HostLab, host):
    from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
    from dsinfra.bootstrap.hosts import HostSpec
    from dsinfra.bootstrap.remote import HostLog, SshSettings, open_connection
    from dsinfra.bootstrap.secrets import Secrets

    spec = HostSpec(name=host.name, address=host.listen, user=USER, key_path=lab.client_key,
                    role="head", instance_type=host.instance_type)
    known = KnownHosts(record_path=lab.base / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    secrets = Secrets(api_key="dsk-unused")
    return open_connection(spec, known, HostLog(None, secrets), secrets, SshSettings()), spec


def _timed(conn, command: str) -> float:
    from dsinfra.bootstrap.remote import CommandFailed

    started = time.perf_counter()
    try:
        conn.sh(command, root=True, timeout=3600)
    except CommandFailed as exc:
        raise SystemExit(f"{exc}\n{exc.output_tail}") from None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--aws", default=str(ROOT / ".venv-bench-awscli" / "bin" / "aws"))
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dsinfra-bench-weights-"))
    lab = HostLab(base)
    proc, url = start_moto(lab.service_ip)
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        print(json.dumps(_run(lab, base, url, args), indent=1))
    finally:
        stop_moto(proc)
        lab.close()
        shutil.rmtree(base, ignore_errors=True)


def _run(lab: HostLab, base: Path, url: str, args) -> dict:
    from dsinfra.bootstrap import nodekit
    from dsinfra.bootstrap.plan import HostPlan
    from dsinfra.bootstrap.secrets import Secrets
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.model_cache import push

    host = lab.fresh("bench", "g5.2xlarge")
    conn, spec = _connect(lab, host)
    plan = HostPlan(host=spec, engine=None, secrets=Secrets(api_key="dsk-unused"),
                    region="us-east-1", node_kit=True, node_aws={"endpoint_url": url, **KEYS})
    if not nodekit.kit_ready(conn, plan):
        nodekit.install_kit(conn, plan)
    client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
    # Outside the lab's 1 GB tmpfs (the hosts' files): the snapshot and both copies.
    with tempfile.TemporaryDirectory(prefix="dsinfra-bench-snapshot-") as tmp:
        pushed = push(_snapshot(Path(tmp), args.shards, args.shard_mb),
                      f"s3://{BUCKET}/mirror", MODEL, region="us-east-1")
    ours = nodekit.kit_command("dsinfra.cloud.model_cache", "fetch", "--from",
                               f"s3://{BUCKET}/mirror", "--model", MODEL, "--to", "{dest}")
    aws = (f"AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 "
           f"{shlex.quote(args.aws)} s3 cp --recursive --only-show-errors --endpoint-url {url} "
           f"--exclude dsinfra-manifest.json s3://{BUCKET}/mirror/{MODEL} {{dest}}")
    times: dict[str, list[float]] = {"node kit fetch (SHA-256 verified)": [],
                                     "aws s3 cp --recursive": []}
    for run in range(args.runs):
        for name, command in zip(times, (ours, aws)):
            dest = f"/var/tmp/dsinfra-bench-{os.getpid()}-{run}-{name.split()[0]}"
            conn.sh(f"rm -rf {dest}", root=True)
            times[name].append(_timed(conn, command.replace("{dest}", dest)))
            conn.sh(f"rm -rf {dest}", root=True)
    mb = pushed.bytes_total / 1e6
    return {"bytes": pushed.bytes_total, "files": pushed.files, "runs": args.runs,
            "cpus": os.cpu_count(), "load_average_at_end": round(os.getloadavg()[0], 2),
            "host_python": conn.out("python3 -V"),
            "results": {name: {"median_s": round(statistics.median(t), 2),
                               "min_s": round(min(t), 2), "max_s": round(max(t), 2),
                               "median_mb_per_s": round(mb / statistics.median(t), 1)}
                        for name, t in times.items()}}


if __name__ == "__main__":
    main()
