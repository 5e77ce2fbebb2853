"""Weights' download throughput: `dsinfra cache fetch` (boto3's transfer manager, verified by
SHA-256) against a plain `aws s3 cp --recursive` of the same objects from the same moto S3
server on loopback, on the same machine (issue 15, item 3; target: at least as fast).

    python3 -m venv .venv-bench-awscli && .venv-bench-awscli/bin/pip install awscli
    .venv/bin/python bench/bench_model_cache.py --shards 4 --shard-mb 256 --runs 3

Runs alternate (ours, aws, ours, aws, ...) so load on the shared machine hits both alike.
The destination is a fresh folder each run (no resume shortcut). Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.motoserver import start as start_moto  # noqa: E402
from tests.motoserver import stop as stop_moto  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"
BUCKET = "bench-weights"


def _snapshot(root: Path, shards: int, shard_mb: int) -> Path:
    src = root / "snapshot"
    src.mkdir()
    for i in range(shards):
        with open(src / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", "wb") as out:
            for _ in range(shard_mb):
                out.write(os.urandom(1024 * 1024))
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "tokenizer.json").write_bytes(os.urandom(9_000_000))
    return src


def _ours(uri: str, dest: Path) -> float:
    from dsinfra.cloud.model_cache import fetch

    started = time.perf_counter()
    fetch(uri, MODEL, dest, region="us-east-1")
    return time.perf_counter() - started


def _aws(aws_exe: str, uri: str, dest: Path, endpoint: str) -> float:
    started = time.perf_counter()
    subprocess.run([aws_exe, "s3", "cp", "--recursive", "--only-show-errors",
                    "--endpoint-url", endpoint, "--exclude", "dsinfra-manifest.json",
                    f"{uri}/{MODEL}", str(dest)], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--aws", default=".venv-bench-awscli/bin/aws")
    args = parser.parse_args()
    proc, url = start_moto()
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        from dsinfra.cloud.aws import client
        from dsinfra.cloud.model_cache import push

        client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            root = Path(tmp)
            src = _snapshot(root, args.shards, args.shard_mb)
            uri = f"s3://{BUCKET}/mirror"
            pushed = push(src, uri, MODEL, region="us-east-1")
            times: dict[str, list[float]] = {"dsinfra cache fetch": [], "aws s3 cp": []}
            for run in range(args.runs):
                for name in times:
                    dest = root / f"{name.split()[0]}-{run}"
                    took = (_ours(uri, dest) if name.startswith("dsinfra")
                            else _aws(args.aws, uri, dest, url))
                    times[name].append(took)
                    shutil.rmtree(dest)
            mb = pushed.bytes_total / 1e6
            print(json.dumps({
                "bytes": pushed.bytes_total, "files": pushed.files, "runs": args.runs,
                "cpus": os.cpu_count(), "load_average_at_end": round(os.getloadavg()[0], 2),
                "results": {name: {"median_s": round(statistics.median(t), 2),
                                   "min_s": round(min(t), 2), "max_s": round(max(t), 2),
                                   "median_mb_per_s": round(mb / statistics.median(t), 1)}
                            for name, t in times.items()}}, indent=1))
    finally:
        stop_moto(proc)
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
