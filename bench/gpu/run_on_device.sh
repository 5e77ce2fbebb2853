#!/usr/bin/env bash
# What the lead ran on the lent GPU machine (see docs/GPU_EVIDENCE.md): the host probe with a
# timed all-reduce, then the sizing measurements. Writes into $OUT (or ./gpu-out).
set -uo pipefail
out=${OUT:-gpu-out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
# NVLink multicast stays off on shared hosts (the lender's rule): keep whatever is set.
env | grep -E '^(NCCL_|TORCH_SYMM|NVSHMEM_)' | sort
nvidia-smi
python3 bootstrap/gpu_probe.py --allreduce --allreduce-mib 256 --raw-dir "$out/raw" > "$out/probe.json"
echo "probe exit $?"
tar czf "$out/probe-raw.tgz" -C "$out" raw && rm -rf "$out/raw"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d[k] for k in ("gpu_count","driver_version","cuda_version","fabric_manager","efa","allreduce","topology")}, indent=1)); [print(g["index"], g["name"], g["memory_total_mib"], g["nvlinks"]) for g in d["gpus"]]' "$out/probe.json"
python3 bench/gpu/measure_sizing.py "$out/sizing.json" "$@"
echo "sizing exit $?"
