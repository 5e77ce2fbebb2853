#!/usr/bin/env bash
# The probe alone, on the lent GPU machine: its JSON and every raw command output it parsed.
set -uo pipefail
out=${OUT:-gpu-out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
env | grep -E '^(NCCL_|TORCH_SYMM|NVSHMEM_)' | sort
python3 bootstrap/gpu_probe.py --allreduce --allreduce-mib 256 --raw-dir "$out/raw" > "$out/probe.json"
echo "probe exit $?"
tar czf "$out/probe-raw.tgz" -C "$out" raw && rm -rf "$out/raw"
cat "$out/probe.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["gpus"]=[{k:g[k] for k in ("index","name","memory_total_mib","nvlinks")} for g in d["gpus"]]; print(json.dumps(d, indent=1))'
# A larger message for the bandwidth record (the probe's default stays small and quick).
python3 bootstrap/gpu_probe.py --allreduce --allreduce-mib 1024 > "$out/probe-1gib.json"
python3 -c 'import json,sys; print("1 GiB all-reduce:", json.load(open(sys.argv[1]))["allreduce"])' "$out/probe-1gib.json"
