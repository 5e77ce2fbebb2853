"""SGLang: one ``sglang.launch_server``, tensor parallel over every GPU of every node, with
``--nnodes``/``--node-rank``/``--dist-init-addr`` across nodes."""

from __future__ import annotations

import shlex

from dsinfra.bootstrap.engines import Engine
from dsinfra.engines import engine_spec


class SGLang(Engine):
    name = "sglang"

    def container_args(self, plan, host) -> list[str]:
        return ["--entrypoint", "/bin/sh", plan.image, "-c", _sglang_script(plan, host)]


def _sglang_script(plan, host) -> str:
    args = ["python3", "-m", "sglang.launch_server", "--model-path", plan.model_path,
            "--served-model-name", plan.model, "--host", "0.0.0.0", "--port", str(plan.port),
            "--tp", str(plan.gpus_per_node * plan.nodes),
            "--mem-fraction-static", f"{plan.gpu_memory_utilization:g}",
            "--context-length", str(plan.max_model_len),
            # /metrics on the API port: the idle watcher reads it (off by default in SGLang).
            "--enable-metrics", *plan.recipe_flags]
    if plan.nodes > 1:
        args += ["--nnodes", str(plan.nodes), "--node-rank", str(host.node_rank),
                 "--dist-init-addr", f"{plan.head_address}:{engine_spec('sglang').peer_port}"]
    # SGLang takes the key only as a flag: it is expanded inside the container from the env
    # file, so it is on neither the unit file nor the host's docker command line.
    return "exec " + " ".join(shlex.quote(a) for a in args) + ' --api-key "$DSINFRA_API_KEY"'
