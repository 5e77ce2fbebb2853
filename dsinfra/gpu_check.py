"""Compare what a host's GPU probe saw (bootstrap/gpu_probe.py JSON) with what the catalog
says its instance type has and with the EFA interfaces its launch attached. Pure: every
problem comes back as one sentence naming the host and what is missing, and an empty list
means the host is what we pay for."""

from __future__ import annotations

from typing import Any

from dsinfra.catalog import INSTANCE_SPECS, InstanceSpec

# NVLink links per GPU on NVSwitch systems (A100: NVLink3 x12; H100/H200: NVLink4 x18).
NVLINKS_PER_GPU: dict[str, int] = {"A100": 12, "H100": 18, "H200": 18}

# All-reduce bus bandwidth floors (GB/s, large messages, all local GPUs). NVSwitch hosts reach
# well over these (measured here: 2x H200 298 GB/s at 256 MiB, see docs/GPU_EVIDENCE.md;
# nccl-tests on 8x A100 ~230, on 8x H100 ~450); a result below means links are down or
# traffic fell back to PCIe. PCIe-only hosts (A10G, L40S) get a floor that only catches a
# broken setup.
ALLREDUCE_BUSBW_FLOOR_GBPS: dict[str, float] = {"A100": 150.0, "H100": 250.0, "H200": 250.0,
                                               "A10G": 5.0, "L40S": 5.0}
MEMORY_TOLERANCE = 0.05
# GPUs whose driver reports an NVSwitch fabric state (Hopper and later). A100 prints N/A there
# while nvidia-fabricmanager runs (bottlerocket-os/bottlerocket#3873): it is judged by the
# service and the NVLink topology instead.
FABRIC_STATE_GPUS = ("H100", "H200", "B200")
# What `nvidia-smi -q` prints where a GPU has no fabric state to report: A100 prints N/A,
# a single Hopper GPU Not Supported (leptonai/gpud#1140). Only other values are judged.
FABRIC_NOT_REPORTED = ("N/A", "Not Supported")


def check_gpu_facts(facts: dict[str, Any], instance_type: str | InstanceSpec, host: str, *,
                    efa_interfaces: int | None = None) -> list[str]:
    """Every way ``facts`` falls short of ``instance_type``; empty when the host matches.

    ``efa_interfaces``: how many EFA interfaces the instance was launched with (the stack
    outputs say); the type's maximum is not a requirement, since a device exists only where an
    interface was attached. None: not known, only fi_info and sysfs must agree."""
    spec = instance_type if isinstance(instance_type, InstanceSpec) \
        else INSTANCE_SPECS[instance_type]
    problems = [f"{host}: {p}" for p in facts.get("errors", [])]
    problems += _gpu_problems(facts, spec, host)
    if spec.nvswitch and spec.gpu_count > 1:
        problems += interconnect_problems(facts, spec.gpu_model or "", host)
    problems += efa_problems(facts, efa_interfaces, host)
    problems += allreduce_problems(facts, spec, host)
    return problems


def _gpu_problems(facts: dict[str, Any], spec: InstanceSpec, host: str) -> list[str]:
    gpus = facts.get("gpus", [])
    expected = f"{spec.gpu_count}x {spec.gpu_model} for {spec.name}"
    problems = []
    if len(gpus) != spec.gpu_count:
        problems.append(f"{host}: {len(gpus)} of {spec.gpu_count} GPUs visible (expected "
                        f"{expected})")
    for gpu in gpus:
        label = f"{host}: GPU {gpu.get('index')} ({gpu.get('name')})"
        if spec.gpu_model and spec.gpu_model not in str(gpu.get("name", "")):
            problems.append(f"{label} is not an {spec.gpu_model} (expected {expected})")
        memory = gpu.get("memory_total_mib")
        want = spec.gpu_memory_mib_visible
        if memory is None or abs(memory - want) > want * MEMORY_TOLERANCE:
            problems.append(f"{label} has {memory} MiB of memory, expected about {want} MiB")
        if gpu.get("ecc_uncorrected_volatile"):
            problems.append(f"{label} reports {gpu['ecc_uncorrected_volatile']} uncorrected "
                            "ECC errors since boot (drain the host and ask AWS to replace it)")
    return problems


def interconnect_problems(facts: dict[str, Any], gpu_model: str, host: str) -> list[str]:
    """NVLink links down, GPUs missing from the NVLink topology, fabric not initialised."""
    problems = []
    want_links = NVLINKS_PER_GPU.get(gpu_model)
    for gpu in facts.get("gpus", []):
        links = gpu.get("nvlinks") or {}
        if links.get("inactive"):
            problems.append(f"{host}: GPU {gpu['index']} has NVLink links down: "
                            f"{', '.join(map(str, links['inactive']))}")
        if want_links and links.get("active", 0) < want_links and not links.get("inactive"):
            problems.append(f"{host}: GPU {gpu['index']} shows {links.get('active', 0)} active "
                            f"NVLink links, expected {want_links}")
    problems += _topology_problems(facts, host)
    return problems + fabric_problems(facts, gpu_model, host)


def fabric_problems(facts: dict[str, Any], gpu_model: str, host: str) -> list[str]:
    """The fabric State/Status where the driver reports one, else the fabric manager service."""
    fabric = facts.get("fabric_manager", {})
    states, statuses = fabric.get("fabric_states", []), fabric.get("fabric_statuses", [])
    reported = [s for s in states if s not in FABRIC_NOT_REPORTED]
    service = fabric.get("service", "unknown")
    if gpu_model in FABRIC_STATE_GPUS and reported:
        # The state proves fabric manager did its job; the service itself may run outside
        # the VM (our lent H200 hosts show no unit), so its absence alone is no failure.
        if any(s != "Completed" for s in reported) or \
                any(s not in ("Success", *FABRIC_NOT_REPORTED) for s in statuses):
            return [f"{host}: NVSwitch fabric not ready (state {states}, status {statuses}); "
                    "restart nvidia-fabricmanager"]
        return []
    if service != "active":
        return [f"{host}: nvidia-fabricmanager is {service} on an NVSwitch {gpu_model} host "
                "(install and start nvidia-fabricmanager: without it CUDA sees no NVLink "
                "peers)"]
    return []


def _topology_problems(facts: dict[str, Any], host: str) -> list[str]:
    topology = facts.get("topology") or {}
    gpu_names = [f"GPU{g['index']}" for g in facts.get("gpus", [])]
    problems = []
    for name in gpu_names:
        row = topology.get(name)
        if row is None:
            problems.append(f"{host}: {name} is missing from the NVLink topology")
            continue
        not_nvlink = sorted(peer for peer, link in row.items()
                            if peer in gpu_names and not str(link).startswith("NV"))
        if not_nvlink:
            problems.append(f"{host}: {name} reaches {', '.join(not_nvlink)} without NVLink "
                            f"({', '.join(row[p] for p in not_nvlink)})")
    return problems


def efa_problems(facts: dict[str, Any], attached: int | None, host: str) -> list[str]:
    """``attached`` EFA devices visible to libfabric and the kernel, each counted once."""
    efa = facts.get("efa") or {}
    seen, sysfs = efa.get("count", 0), efa.get("sysfs_devices")
    problems = []
    if attached and seen < attached:
        problems.append(f"{host}: {seen} of {attached} attached EFA devices visible to fi_info "
                        f"({efa.get('fi_info', 'not run')}; check the EFA software and the "
                        "security group's self rule)")
    if attached and sysfs is not None and len(sysfs) < attached:
        problems.append(f"{host}: {len(sysfs)} of {attached} attached EFA devices in "
                        "/sys/class/infiniband (is the efa kernel module loaded?)")
    if sysfs is not None and efa.get("fi_info") == "ok" and \
            sorted(sysfs) != sorted(efa.get("devices", [])):
        problems.append(f"{host}: fi_info lists EFA devices {efa.get('devices', [])} but "
                        f"/sys/class/infiniband has {sorted(sysfs)}")
    return problems


def allreduce_problems(facts: dict[str, Any], spec: InstanceSpec, host: str) -> list[str]:
    result = facts.get("allreduce")
    if not result or result.get("skipped"):
        return []
    if result.get("error"):
        return [f"{host}: NCCL all-reduce failed: {result['error'].splitlines()[-1]}"]
    problems = []
    if not result.get("correct", False):
        problems.append(f"{host}: NCCL all-reduce returned wrong sums")
    floor = ALLREDUCE_BUSBW_FLOOR_GBPS.get(spec.gpu_model or "")
    busbw = result.get("busbw_gbps", 0.0)
    if floor is not None and busbw < floor:
        problems.append(f"{host}: NCCL all-reduce bus bandwidth {busbw:.1f} GB/s across "
                        f"{result.get('world_size')} GPUs is below the {floor:.0f} GB/s floor "
                        f"for {spec.gpu_model} (NVLink down or traffic on PCIe?)")
    return problems
