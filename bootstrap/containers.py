"""What each node role's engine container is, for ``dsinfra plan --json`` (``containers``):
the same run script bootstrap writes, read back as image, command, environment names, mounts
and ports. Environment values never appear: only names (the env files hold the API key)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.config import StackConfig
from dsinfra.engines import engine_spec

# Offline the addresses are unknown (the mocks' are made up): shown as these words instead.
HEAD_ADDRESS = "HEAD_PRIVATE_IP"
NODE_ADDRESS = "NODE_PRIVATE_IP"
CACHE_ON_HOST = "MODEL_CACHE_DIR"  # /opt/dlami/nvme/huggingface or /opt/dsinfra/cache/...


def containers(config: StackConfig, hosts: list[HostSpec]) -> list[dict[str, Any]]:
    """One entry per node role (head first), rendered as bootstrap would render it: for one
    node group, the first (replicas run the same engine in each group, bootstrap/hosts.py)."""
    group = [h for h in hosts if h.group == hosts[0].group] if hosts else hosts
    shown = [replace(h, address=HEAD_ADDRESS if h.role == "head" else NODE_ADDRESS,
                     private_address=None) for h in group]
    plan = eng.engine_plan(config, shown, ecr=config.tier_spec.image_from_ecr)
    entries, seen = [], set()
    for host in shown:
        if host.role in seen:
            continue
        seen.add(host.role)
        entries.append(_entry(plan, host, shown))
    return entries


def _entry(plan: eng.EnginePlan, host: HostSpec, hosts: list[HostSpec]) -> dict[str, Any]:
    script = eng.run_script(plan, host, cache_dir=CACHE_ON_HOST, efa=host.efa_interfaces > 0)
    argv = shlex.split(script.splitlines()[-1].removeprefix("exec "))
    options, rest = _docker_options(argv[2:])  # after "docker run"
    env_names = [*_env_file_names(plan, host), *(v.split("=", 1)[0] for v in options["-e"])]
    count = sum(1 for h in hosts if h.role == host.role)
    return {"role": host.role, "nodes": count, "replica": plan.nodes == 1,
            "image": plan.image, "command": rest[rest.index(plan.image) + 1:],
            "image_source": plan.source.to_dict() if plan.source else None,
            "entrypoint": options["--entrypoint"][0] if options["--entrypoint"] else None,
            "env": sorted(set(env_names)),
            "mounts": [_mount(v) for v in options["-v"]],
            "devices": options["--device"], "ports": _ports(plan),
            "recipe": {"family": plan.recipe.family, "flags": list(plan.recipe.flags),
                       "sources": list(plan.recipe.sources)}}


def _docker_options(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    valued = {"--name", "--gpus", "--network", "--ipc", "--shm-size", "--ulimit", "--env-file",
              "-v", "--device", "--cap-add", "--entrypoint", "-e"}
    options: dict[str, list[str]] = {k: [] for k in valued}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in valued:
            options[argv[i]].append(argv[i + 1])
            i += 2
        else:
            i += 1
    return options, argv[i:]


def _env_file_names(plan: eng.EnginePlan, host: HostSpec) -> list[str]:
    from dsinfra.bootstrap.secrets import Secrets

    # Rendered with placeholder secrets only to read the names; the values are dropped here.
    text = eng.engine_env(plan, Secrets(api_key="x", hf_token="x"))
    if host.efa_interfaces > 0:
        text += eng.efa_env(host.efa_interfaces)
    return [line.split("=", 1)[0] for line in text.splitlines() if "=" in line]


def _mount(volume: str) -> dict[str, Any]:
    source, target, *mode = volume.split(":")
    return {"source": source, "target": target, "read_only": mode == ["ro"]}


def _ports(plan: eng.EnginePlan) -> list[dict[str, Any]]:
    ports = [{"port": plan.port, "purpose": "API (host network)"}]
    spec = engine_spec(plan.name)
    if plan.nodes > 1 and spec.peer_port:
        ports.append({"port": spec.peer_port, "purpose": spec.peer_purpose})
    return ports
