"""Bootstrap benchmark on real sshd test hosts (tests/bootstrap/hostlab.py; needs root).

Measures, in one run on the same kind of fresh plain-Ubuntu g5.xlarge test hosts:
  1. full bootstrap of one host vs eight hosts (one 8-node vLLM cluster) - target <= 1.5x;
  2. a re-run on the eight finished hosts - target <= 2 s (marker path; --full-check also shown);
  3. the same check-and-apply sequence as an ansible-core playbook (bench/ansible/bootstrap.yml)
     on the same eight hosts reset to fresh, then re-run - target: dsinfra >= 2x faster.

Usage: sudo .venv/bin/python bench/bench_bootstrap.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bootstrap"))

from hostlab import USER, HostLab  # noqa: E402

from dsinfra.bootstrap import engine as eng  # noqa: E402
from dsinfra.bootstrap import steps_system  # noqa: E402
from dsinfra.bootstrap.hosts import load_inventory  # noqa: E402
from dsinfra.bootstrap.remote import SshSettings  # noqa: E402
from dsinfra.bootstrap.runner import BootstrapOptions, bootstrap_inventory  # noqa: E402
from dsinfra.bootstrap.secrets import resolve_secrets  # noqa: E402
from dsinfra.config import parse_stack_config  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def ansible_playbook() -> Path:
    """$ANSIBLE_PLAYBOOK, else next to this Python (pip install -e '.[bench]'), else on PATH."""
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = os.environ.get("ANSIBLE_PLAYBOOK") or (str(beside) if beside.exists() else None) \
        or shutil.which("ansible-playbook")
    if not found:
        raise SystemExit("ansible-playbook not found: pip install -e '.[bench]' or set "
                         "ANSIBLE_PLAYBOOK")
    return Path(found)


def write_inventory(lab, hosts, path: Path) -> Path:
    import yaml

    entries = [{"name": h.name, "address": h.listen, "user": USER, "key": str(lab.client_key),
                "role": "head" if i == 0 else "worker", "instance_type": h.instance_type,
                "host_key": h.host_key_line()} for i, h in enumerate(hosts)]
    path.write_text(yaml.safe_dump({"config": {"engine": "vllm", "model": MODEL},
                                    "hosts": entries}))
    return path


SETTLE_S = 1.0  # before each timed run: what a reset or the previous run left running ends


def timed_bootstrap(inventory: Path, options: BootstrapOptions) -> float:
    time.sleep(SETTLE_S)
    started = time.perf_counter()
    report = bootstrap_inventory(inventory, progress=False, options=options)
    elapsed = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"bootstrap failed: {[h.failed_step for h in report.hosts if not h.ok]}")
    return elapsed


def ansible_inventory(lab, hosts, inventory: Path, state_dir: Path, out: Path) -> Path:
    import yaml

    values, specs = load_inventory(inventory)
    config = parse_stack_config("hosts", {"tier": "dev", "budget": {"amountUsd": 0},
                                          "nodeCount": len(specs), **values})
    plan = eng.engine_plan(config, specs)
    secrets = resolve_secrets(state_dir, "hosts")
    cache = f"{steps_system.CACHE_MOUNT}/huggingface"
    host_vars = {}
    for spec in specs:
        host_vars[spec.name] = {
            "ansible_host": spec.address, "ansible_user": USER,
            "ansible_ssh_private_key_file": str(lab.client_key),
            "ansible_python_interpreter": "/usr/bin/python3", "role": spec.role,
            "gpu_count": spec.spec.gpu_count, "engine_env": eng.engine_env(plan, secrets),
            "run_script": eng.run_script(plan, spec, cache_dir=cache, efa=False),
            "unit": eng.systemd_unit(plan), "image": plan.image, "port": plan.port,
            "model": plan.model,
            "cache_script": steps_system._format_and_mount(["/dev/nvme1n1"]),
            "probe_path": str(ROOT / "bootstrap" / "gpu_probe.py"),
            "health_path": str(ROOT / "bootstrap" / "health_check.py")}
    out.write_text(yaml.safe_dump({"all": {"hosts": host_vars}}))
    (out.parent / "known_hosts").write_text(
        "".join(f"{h.listen} {h.host_key_line()}\n" for h in hosts))
    return out


def timed_ansible(inventory: Path, work: Path) -> float:
    env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_FORKS="8",
               ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "cp"), ANSIBLE_LOCAL_TEMP=str(work / "t"),
               ANSIBLE_SSH_ARGS=f"-o ControlMaster=auto -o ControlPersist=60s "
                                f"-o StrictHostKeyChecking=yes "
                                f"-o UserKnownHostsFile={work / 'known_hosts'}")
    started = time.perf_counter()
    done = subprocess.run([str(ansible_playbook()), "-i", str(inventory),
                           str(ROOT / "bench" / "ansible" / "bootstrap.yml")],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ansible-playbook failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh 1-host and 8-host bootstraps this many times (hosts reset "
                             "to fresh between rounds); medians are reported")
    args = parser.parse_args()
    os.environ.setdefault("DSINFRA_API_KEY", "dsk-bench-0123456789abcdef")
    base = Path(tempfile.mkdtemp(prefix="dsinfra-bench-"))
    lab = HostLab(base)
    try:
        results = run(lab, base, args.rounds)
    finally:
        lab.close()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in results.items()))


def run(lab: HostLab, base: Path, rounds: int = 1) -> dict:
    options = BootstrapOptions(state_dir=base / "state", console_pins=False,
                               ssh=SshSettings(backoff_s=0.3, ssh_wait_s=30, reboot_wait_s=60),
                               health_timeout_s=120, health_poll_s=0.2)
    solo = lab.add_host("solo", "g5.xlarge")
    eight = [lab.add_host(f"node{i}", "g5.xlarge") for i in range(8)]
    inventory = write_inventory(lab, eight, base / "eight.yaml")
    ones, eights = [], []
    for round_ in range(rounds):
        if round_:
            for host in (solo, *eight):
                host.reset()
            shutil.rmtree(base / "state", ignore_errors=True)  # known hosts, markers, runs
        ones.append(timed_bootstrap(write_inventory(lab, [solo], base / "solo.yaml"), options))
        eights.append(timed_bootstrap(inventory, options))
    one_s, eight_s = sorted(ones)[len(ones) // 2], sorted(eights)[len(eights) // 2]
    rerun_s = timed_bootstrap(inventory, options)
    rerun_full_s = timed_bootstrap(inventory, replace(options, full_check=True))
    for host in eight:
        host.reset()
    work = base / "ansible"
    (work / "cp").mkdir(parents=True)
    ans_inventory = ansible_inventory(lab, eight, inventory, base / "state", work / "inv.yml")
    ansible_s = timed_ansible(ans_inventory, work)
    ansible_rerun_s = timed_ansible(ans_inventory, work)
    return {
        "one_host_s": round(one_s, 2), "eight_hosts_s": round(eight_s, 2),
        "eight_vs_one": round(eight_s / one_s, 2),
        "rounds": [{"one_host_s": round(o, 2), "eight_hosts_s": round(e, 2),
                    "eight_vs_one": round(e / o, 2)} for o, e in zip(ones, eights)],
        "rerun_eight_s": round(rerun_s, 2), "rerun_eight_full_check_s": round(rerun_full_s, 2),
        "ansible_eight_s": round(ansible_s, 2), "ansible_rerun_eight_s": round(ansible_rerun_s, 2),
        "speedup_fresh": round(ansible_s / eight_s, 2),
        "speedup_rerun": round(ansible_rerun_s / rerun_s, 2),
        "speedup_rerun_full_check": round(ansible_rerun_s / rerun_full_s, 2),
        "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    main()
