"""The GPU probe step: copy ``gpu_probe.py`` to the host, run it, and judge what it saw exactly
as ``dsinfra host check`` does (``dsinfra.host_check.judge``): the instance type from the
catalog, the EFA interfaces from what the launch attached."""

from __future__ import annotations

import json

from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.host_check import judge, probe_source

PROBE_PATH = "/opt/dsinfra/bin/gpu_probe.py"
# Standard library only: -I -S keeps the host's site-packages and PYTHON* variables (a DLAMI's
# pip installs, a broken sitecustomize) out of it, and starts it faster.
PROBE_COMMAND = f"python3 -I -S {PROBE_PATH}"


def gpus_match_catalog(c, p: HostPlan) -> bool:
    """Fails the step with every problem the probe found, each naming the host."""
    c.ensure_file(probe_source(), PROBE_PATH, mode="0755")
    out = c.sh(PROBE_COMMAND, timeout=300)
    try:
        facts = json.loads(out.stdout)
    except ValueError:
        raise StepError("the GPU probe printed no JSON", command=PROBE_COMMAND,
                        output_tail=out.stdout[-1500:] + out.stderr[-500:]) from None
    p.facts["gpu"] = {"count": facts.get("gpu_count"), "driver": facts.get("driver_version"),
                      "cuda": facts.get("cuda_version"),
                      "efa_devices": (facts.get("efa") or {}).get("count")}
    problems = judge(facts, p.host.instance_type, p.host.name,
                     efa_interfaces=p.host.efa_interfaces).problems
    if problems:
        raise StepError("; ".join(problems), command=PROBE_COMMAND,
                        output_tail="\n".join(problems))
    return True
