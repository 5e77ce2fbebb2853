"""The host's record of a finished bootstrap, so a re-run on an unchanged host costs one command
plus the endpoint check instead of every step's check.

The marker holds a fingerprint of everything the steps would make (engine plan, pinned
versions, secrets' digest, cache location) and a token that is also written to /run, which is
emptied at every boot. The fast path is taken only when the fingerprint matches, the host has
not rebooted since, and Docker and the engine unit are active; anything else, or
``--full-check``, runs every step's own check.
"""

from __future__ import annotations

import hashlib
import json
import secrets as _random
import time
from dataclasses import asdict

from dsinfra import __version__
from dsinfra.bootstrap import steps_system as system
from dsinfra.bootstrap.engine import UNIT_NAME
from dsinfra.bootstrap.plan import HostPlan

MARKER = "/opt/dsinfra/state/bootstrap.json"
BOOT_TOKEN = "/run/dsinfra/boot-token"


def fingerprint(p: HostPlan, step_names: list[str], cache_dir: str) -> str:
    secret_digest = hashlib.sha256(f"{p.secrets.api_key}\0{p.secrets.hf_token}".encode())
    record = {
        "dsinfra": __version__, "steps": step_names, "host": p.host.name, "role": p.host.role,
        "instance_type": p.host.instance_type, "engine": asdict(p.engine),
        "secrets": secret_digest.hexdigest(), "cache_dir": cache_dir,
        "idle_watch": asdict(p.idle_watch) if p.idle_watch is not None else None,
        "pins": [system.CUDA_TOOLKIT_PACKAGE, system.DRIVER_PACKAGE, system.NVIDIA_CTK_VERSION,
                 system.EFA_INSTALLER_VERSION, system.CUDA_CHECK_IMAGE],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def unchanged(c, p: HostPlan, step_names: list[str]) -> bool:
    """One command: marker, boot token and both services."""
    out = c.sh(f"cat {MARKER} 2>/dev/null; echo; cat {BOOT_TOKEN} 2>/dev/null; echo; "
               f"systemctl is-active docker {UNIT_NAME} 2>/dev/null", root=True, warn=True)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    try:
        marker = json.loads(lines[0])
    except (ValueError, IndexError):
        return False
    token = lines[1].strip() if len(lines) > 1 else ""
    services = [line.strip() for line in lines[2:] if line.strip()]
    if marker.get("token") != token or services != ["active", "active"]:
        return False
    p.facts["cache_dir"] = marker.get("cache_dir")
    return marker.get("fingerprint") == fingerprint(p, step_names, marker.get("cache_dir", ""))


def write(c, p: HostPlan, step_names: list[str]) -> None:
    token = _random.token_hex(16)
    cache_dir = system.cache_dir(p)
    record = {"fingerprint": fingerprint(p, step_names, cache_dir), "token": token,
              "cache_dir": cache_dir, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}
    c.put_files({BOOT_TOKEN: (token + "\n", "0600"),
                 MARKER: (json.dumps(record) + "\n", "0600")})
