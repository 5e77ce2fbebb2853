"""Record what the NCCL a GPU machine ships prints when it looks for a net plugin (issue 25):
one process, one GPU, one all-reduce, NCCL_DEBUG=INFO for INIT and NET; once with
NCCL_NET_PLUGIN unset and once with NCCL_NET_PLUGIN=ofi (no aws-ofi-nccl installed). Run on the
lent H200 by the device tool; the output is committed under tests/fixtures/nccl/h200-lent/."""

import os
import subprocess
import sys

CHILD = r"""
import os, torch, torch.distributed as dist
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda:0"))
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
torch.cuda.synchronize()
print("all_reduce sum", x.tolist(), "nccl", torch.cuda.nccl.version(), "torch", torch.__version__,
      flush=True)
dist.destroy_process_group()
"""

out = sys.argv[1]
for name, extra in (("no-plugin-env", {}), ("plugin-env-ofi", {"NCCL_NET_PLUGIN": "ofi"})):
    env = {**os.environ, "NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET", **extra}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=240)
    with open(os.path.join(out, f"{name}.log"), "w") as handle:
        handle.write(done.stdout + done.stderr)
    print(name, "exit", done.returncode)
