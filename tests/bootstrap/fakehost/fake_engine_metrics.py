"""The fake engine's /metrics: Prometheus text in the format the real engine serves, with
counters that move with the requests the fake answers (fake_docker.py's handler calls
``begin``/``end``). Which engine: the one its image names (vllm or sglang).

SOURCES (nothing here is invented; tests/fixtures/metrics/SOURCE.md has the recordings):
- vLLM (image vllm/vllm-openai:v0.11.0, the V1 engine): names, HELP texts, label names
  (model_name, engine) and the TTFT buckets from vllm/v1/metrics/loggers.py
  (PrometheusStatLogger; vllm-project/vllm, the newest stored version of the file: the
  v0.11.0 tag itself could not be checked out here, see tests/fixtures/metrics/SOURCE.md). Counters are declared without ``_total`` and
  exposed with it (prometheus_client). The labels are written in sorted order, ``le`` among
  them, and a histogram's ``_count`` and ``_sum`` after its buckets, as vLLM's multiprocess
  /metrics printed them in vllm-project/production-stack#617 (vLLM 0.10.0: lines such as
  ``vllm:request_params_n_bucket{engine="0",le="1.0",model_name="zai-org/GLM-4.5"} 4.0``).
- SGLang (image lmsysorg/sglang:v0.4.6.post1-cu124): names and HELP texts as in
  tests/fixtures/metrics/sglang_busy.prom (SGLang's docs/references/production_metrics.md):
  ``{model_name=...}`` labels, a histogram's ``_sum`` first, then its buckets and ``_count``,
  and the TTFT bucket bounds of that recording (0.001 ... 30). The bucket list at exactly
  v0.4.6.post1 could not be read here (the source at that tag was not available to this
  double); the recording's list is used, and dsinfra's parser reads whatever bounds come.
- Values are written as prometheus_client writes floats (``repr``: ``3.0``, ``0.25``).

The fake's own choices (no engine is imitated in these): a request runs from its arrival to
its answer (no streaming: the first token is the whole answer, so its time to first token is
that span); ``max_num_seqs`` requests run at once and the rest wait (vLLM's --max-num-seqs,
the profile's ``max_num_seqs``, default 256); the KV cache's use is running / max_num_seqs.
"""

import threading

VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                     2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
SGLANG_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                       2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0)


def engine_of(image):
    return "sglang" if "sglang" in image else "vllm" if "vllm" in image else None


def _go(value):
    """prometheus_client's floatToGoString for the values used here."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class EngineMetrics:
    def __init__(self, engine, model, max_num_seqs=256):
        self.engine, self.model, self.max_num_seqs = engine, model, max_num_seqs
        self.buckets = VLLM_TTFT_BUCKETS if engine == "vllm" else SGLANG_TTFT_BUCKETS
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(max_num_seqs)
        self.running = self.waiting = 0
        self.generation_tokens = self.prompt_tokens = 0
        self.ttft_counts = [0] * len(self.buckets)
        self.ttft_count, self.ttft_sum = 0, 0.0

    def begin(self):
        """A request arrives: it waits for a slot, then runs."""
        with self.lock:
            self.waiting += 1
        self.slots.acquire()
        with self.lock:
            self.waiting -= 1
            self.running += 1

    def end(self, prompt_tokens, generation_tokens, ttft_s):
        with self.lock:
            self.running -= 1
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generation_tokens
            for i, bound in enumerate(self.buckets):
                if ttft_s <= bound:
                    self.ttft_counts[i] += 1
            self.ttft_count += 1
            self.ttft_sum += ttft_s
        self.slots.release()

    def render(self):
        with self.lock:
            return self._vllm() if self.engine == "vllm" else self._sglang()

    def _vllm(self):
        m = self.model
        base = 'engine="0",model_name="%s"' % m
        lines = []

        def family(name, kind, helptext, value, exposed=None):
            lines.append("# HELP %s %s" % (name, helptext))
            lines.append("# TYPE %s %s" % (name, kind))
            lines.append("%s{%s} %s" % (exposed or name, base, _go(value)))

        family("vllm:num_requests_running", "gauge",
               "Number of requests in model execution batches.", self.running)
        family("vllm:num_requests_waiting", "gauge",
               "Number of requests waiting to be processed.", self.waiting)
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               self.running / self.max_num_seqs)
        family("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.",
               self.prompt_tokens, "vllm:prompt_tokens_total")
        family("vllm:generation_tokens", "counter", "Number of generation tokens processed.",
               self.generation_tokens, "vllm:generation_tokens_total")
        name = "vllm:time_to_first_token_seconds"
        lines.append("# HELP %s Histogram of time to first token in seconds." % name)
        lines.append("# TYPE %s histogram" % name)
        for bound, count in zip(self.buckets + (float("inf"),),
                                self.ttft_counts + [self.ttft_count]):
            lines.append('%s_bucket{engine="0",le="%s",model_name="%s"} %s'
                         % (name, _go(bound), m, _go(count)))
        lines.append("%s_count{%s} %s" % (name, base, _go(self.ttft_count)))
        lines.append("%s_sum{%s} %s" % (name, base, _go(self.ttft_sum)))
        return "\n".join(lines) + "\n"

    def _sglang(self):
        m = self.model
        base = 'model_name="%s"' % m
        lines = []

        def family(name, kind, helptext, value):
            lines.append("# HELP %s %s" % (name, helptext))
            lines.append("# TYPE %s %s" % (name, kind))
            lines.append("%s{%s} %s" % (name, base, _go(value)))

        family("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
               self.prompt_tokens)
        family("sglang:generation_tokens_total", "counter",
               "Number of generation tokens processed.", self.generation_tokens)
        family("sglang:token_usage", "gauge", "The token usage", self.running / self.max_num_seqs)
        name = "sglang:time_to_first_token_seconds"
        lines.append("# HELP %s Histogram of time to first token in seconds." % name)
        lines.append("# TYPE %s histogram" % name)
        lines.append("%s_sum{%s} %s" % (name, base, _go(self.ttft_sum)))
        for bound, count in zip(self.buckets + (float("inf"),),
                                self.ttft_counts + [self.ttft_count]):
            lines.append('%s_bucket{le="%s",model_name="%s"} %s' % (name, _go(bound), m,
                                                                    _go(count)))
        lines.append("%s_count{%s} %s" % (name, base, _go(self.ttft_count)))
        family("sglang:num_running_reqs", "gauge", "The number of running requests",
               self.running)
        family("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue",
               self.waiting)
        return "\n".join(lines) + "\n"
