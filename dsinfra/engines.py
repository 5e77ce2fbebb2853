"""What each inference engine is, as data: one ``EngineSpec`` per engine in ``ENGINE_SPECS``,
and the only place that says so (like ``TIERS`` in dsinfra/tiers.py).

The config schema (the accepted ``engine.name`` values, the default image, port and health
path, which engines allow idle autostop), the idle watcher (the Prometheus names it reads),
``dsinfra plan --json`` (the peers' port across nodes) and the engine modules in
``bootstrap/engines/`` read an engine's traits from here instead of testing its name. What an
engine *runs* (its command line) is code, one module each in ``bootstrap/engines/``.

Pure and standard library only: the node kit ships dsinfra/idle.py, and nothing here reaches
AWS, Pulumi or an SSH host.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsinfra.idle import MetricNames
from dsinfra.serving_metrics import ServingNames


@dataclass(frozen=True)
class EngineSpec:
    name: str
    # Defaults a stack file may override (engine.image / engineImage, engine.port,
    # engine.healthPath). None: the stack file must say (``custom`` runs any image).
    image: str | None
    port: int | None
    health_path: str = "/health"
    # Speaks the OpenAI API: the health step also asks /v1/models and one chat completion.
    openai_compatible: bool = True
    # The Prometheus names idle autostop reads on the API port's /metrics; None: dsinfra knows
    # none, so idle autostop is off for this engine (an explicit idleMinutes is refused).
    metrics: MetricNames | None = None
    # What `dsinfra top` reads on the same /metrics (dsinfra/serving_metrics.py); None: no
    # live view of this engine's load.
    serving: ServingNames | None = None
    # The head's port the other nodes of one multi-node engine connect to, and what it is
    # (``dsinfra plan --json``'s ports; open only between EFA nodes).
    peer_port: int | None = None
    peer_purpose: str = ""
    # Variables whose value is each node's own, set per node when one engine spans nodes.
    per_node_env: tuple[str, ...] = ()

    @property
    def needs_image_and_port(self) -> bool:
        return self.image is None or self.port is None


ENGINE_SPECS: dict[str, EngineSpec] = {
    # docs.vllm.ai "Production Metrics"; tests/fixtures/metrics/ has real /metrics output.
    # request_success_total counts finished requests by finished_reason (vLLM PR #12579).
    # VLLM_HOST_IP: recipes.VLLM_MULTI_NODE (run_cluster.sh sets it to each node's address).
    "vllm": EngineSpec("vllm", image="vllm/vllm-openai:v0.11.0", port=8000,
                       metrics=MetricNames(running=("vllm:num_requests_running",),
                                           waiting=("vllm:num_requests_waiting",),
                                           counters=("vllm:request_success_total",)),
                       # vllm/v1/metrics/loggers.py (PrometheusStatLogger): the KV-cache gauge
                       # is kv_cache_usage_perc since 0.9; gpu_cache_usage_perc is its
                       # deprecated name, hidden by default in later releases.
                       serving=ServingNames(running=("vllm:num_requests_running",),
                                            waiting=("vllm:num_requests_waiting",),
                                            generation_tokens=("vllm:generation_tokens_total",),
                                            ttft=("vllm:time_to_first_token_seconds",),
                                            kv_cache_usage=("vllm:kv_cache_usage_perc",
                                                            "vllm:gpu_cache_usage_perc")),
                       peer_port=6379, peer_purpose="Ray head (nodes only)",
                       per_node_env=("VLLM_HOST_IP",)),
    # SGLang's docs/references/production_metrics.md (served with --enable-metrics). Its
    # token counters move with every request; the request counter is newer than some images.
    "sglang": EngineSpec("sglang", image="lmsysorg/sglang:v0.4.6.post1-cu124", port=30000,
                         metrics=MetricNames(running=("sglang:num_running_reqs",),
                                             waiting=("sglang:num_queue_reqs",),
                                             counters=("sglang:prompt_tokens_total",
                                                       "sglang:generation_tokens_total")),
                         # python/sglang/srt/metrics/collector.py: token_usage is the fraction
                         # of the KV-cache pool's tokens in use.
                         serving=ServingNames(running=("sglang:num_running_reqs",),
                                              waiting=("sglang:num_queue_reqs",),
                                              generation_tokens=(
                                                  "sglang:generation_tokens_total",),
                                              ttft=("sglang:time_to_first_token_seconds",),
                                              kv_cache_usage=("sglang:token_usage",)),
                         peer_port=5000, peer_purpose="SGLang dist-init (nodes only)"),
    # Any image: its own command, port and health path; not assumed to speak the OpenAI API.
    "custom": EngineSpec("custom", image=None, port=None, openai_compatible=False),
}
DEFAULT_ENGINE = "vllm"


def engine_spec(name: str) -> EngineSpec:
    """The engine called ``name``; the config schema only lets known names through."""
    return ENGINE_SPECS[name]


def engine_names() -> tuple[str, ...]:
    return tuple(ENGINE_SPECS)


def idle_engines() -> tuple[str, ...]:
    """Engines whose /metrics the idle watcher reads."""
    return tuple(name for name, spec in ENGINE_SPECS.items() if spec.metrics is not None)
