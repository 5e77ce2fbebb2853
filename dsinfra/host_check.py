"""`dsinfra host check`: is this GPU host what its instance type and launch promise?

One judgement for every caller: the bootstrap's gpu-probe step and the command both pass the
probe's facts (bootstrap/gpu_probe.py JSON) to ``judge``. The edges here (run the probe on this
machine, read a recorded probe JSON, ask IMDS for the instance type) are the command's only;
the bootstrap runs the probe over SSH instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsinfra.catalog import INSTANCE_SPECS, InstanceSpec
from dsinfra.errors import ConfigError, UserError
from dsinfra.gpu_check import check_gpu_facts
from dsinfra.shipping import script_source

IMDS = "http://169.254.169.254/latest"
IMDS_TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 900


@dataclass(frozen=True)
class HostCheck:
    host: str
    instance_type: str
    efa_interfaces: int | None
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        efa = self.facts.get("efa") or {}
        return {"host": self.host, "instance_type": self.instance_type,
                "efa_interfaces": self.efa_interfaces, "ok": self.ok,
                "problems": self.problems,
                "seen": {"gpus": self.facts.get("gpu_count"),
                         "driver": self.facts.get("driver_version"),
                         "cuda": self.facts.get("cuda_version"),
                         "efa_devices": efa.get("count"),
                         "efa_sysfs_devices": len(efa.get("sysfs_devices") or []),
                         "fabric_manager": (self.facts.get("fabric_manager") or {})
                         .get("service"),
                         "allreduce_busbw_gbps": (self.facts.get("allreduce") or {})
                         .get("busbw_gbps")}}


def gpu_spec(instance_type: str) -> InstanceSpec:
    spec = INSTANCE_SPECS.get(instance_type)
    if spec is None or not spec.has_gpus:
        raise ConfigError("--instance-type", instance_type, "a GPU instance type from the "
                          "catalog: " + ", ".join(n for n, s in INSTANCE_SPECS.items()
                                                  if s.has_gpus))
    return spec


def check_efa_interfaces(spec: InstanceSpec, efa_interfaces: int | None) -> None:
    if efa_interfaces is not None and not 0 <= efa_interfaces <= spec.efa_interfaces:
        raise ConfigError("--efa-interfaces", efa_interfaces, f"0 to {spec.efa_interfaces} "
                          f"(the EFA interfaces {spec.name} can be launched with)")


def judge(facts: dict[str, Any], instance_type: str, host: str, *,
          efa_interfaces: int | None) -> HostCheck:
    """Every way the probed host falls short of ``instance_type`` with ``efa_interfaces``
    attached (None: not known, fi_info and sysfs must only agree)."""
    spec = gpu_spec(instance_type)
    check_efa_interfaces(spec, efa_interfaces)
    problems = check_gpu_facts(facts, spec, host, efa_interfaces=efa_interfaces)
    return HostCheck(host, instance_type, efa_interfaces, problems, facts)


def probe_source() -> str:
    return script_source("dsinfra.bootstrap.gpu_probe")


def run_probe(*, allreduce: bool) -> dict[str, Any]:
    """The probe on this machine, as the bootstrap runs it on a host (-I -S: no site-packages,
    no PYTHON* variables)."""
    argv = [sys.executable, "-I", "-S", "-", *(["--allreduce"] if allreduce else [])]
    try:
        done = subprocess.run(argv, input=probe_source(), capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
        return json.loads(done.stdout)
    except (ValueError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"the GPU probe printed no JSON ({exc})") from None


def load_probe_json(path: Path) -> dict[str, Any]:
    try:
        facts = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("--probe-json", str(path), "an existing file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError("--probe-json", str(path), f"the probe's JSON output ({exc})") \
            from None
    if not isinstance(facts, dict) or "gpus" not in facts:
        raise ConfigError("--probe-json", str(path), "the JSON that gpu_probe.py prints "
                          "(an object with gpus, efa, fabric_manager, ...)")
    return facts


def instance_type_from_imds(timeout_s: float = IMDS_TIMEOUT_S) -> str:
    """IMDSv2: a session token, then the instance type."""
    from urllib import request
    from urllib.error import URLError

    try:
        token_request = request.Request(f"{IMDS}/api/token", method="PUT", headers={
            "X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with request.urlopen(token_request, timeout=timeout_s) as answer:
            token = answer.read().decode()
        with request.urlopen(request.Request(
                f"{IMDS}/meta-data/instance-type",
                headers={"X-aws-ec2-metadata-token": token}), timeout=timeout_s) as answer:
            return answer.read().decode().strip()
    except (URLError, OSError) as exc:
        raise UserError(f"no --instance-type given and the instance metadata service did not "
                        f"answer ({exc})", hint="Off EC2, name the type: dsinfra host check "
                        "--instance-type p5.48xlarge") from None
