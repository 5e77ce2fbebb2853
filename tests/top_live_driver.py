"""`dsinfra top STACK` live, for tests/test_top_terminal.py: the real command (its options,
its rich Live view, its Ctrl-C), with its two edges replaced by stand-ins, so that the screen is
the same on every run:

- the replicas: two fake engines (tests/bootstrap/fakehost/fake_engine_metrics.py, the fake
  engine's /metrics in vLLM's format) that answer a fixed script of requests between scrapes,
  read in-process instead of over SSH (tests/bootstrap/test_top.py covers the SSH path);
- the meter: a fixed entry in run_check's shape (tests/bootstrap/test_top.py reads the real
  one on moto); and the clock, which advances 2 s per refresh.

After the second refreshed frame it writes the snapshot shown to $TOP_DRIVER_STATE (the point
the test waits for) and waits for Ctrl-C.

Usage: python tests/top_live_driver.py [dsinfra args...]"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bootstrap" / "fakehost"))

from fake_engine_metrics import EngineMetrics  # noqa: E402

from dsinfra.engines import ENGINE_SPECS  # noqa: E402
from dsinfra.ops import top  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
STATE = Path(os.environ["TOP_DRIVER_STATE"])
ticks = [0]
# Per refresh: (replica, output tokens, time to first token in s) of each request answered.
SCRIPT = {1: [(0, 120, 0.31), (0, 80, 0.42), (1, 64, 1.7)],
          2: [(0, 200, 0.28), (0, 40, 0.36), (0, 90, 0.61), (1, 0, 0.0)]}


def sources_for_stack(stack, **_):
    engines = [EngineMetrics("vllm", MODEL, max_num_seqs=4) for _ in range(2)]
    engines[1].begin()
    engines[1].begin()
    engines[1].waiting = 3  # three more queued behind the two running (the fake's own state)
    names = ("i-0a1b2c3d4e5f60718", "i-0f9e8d7c6b5a49382")
    return top.Sources(
        stack=stack, engine="vllm", names=ENGINE_SPECS["vllm"].serving,
        replicas=[top.Replica(name, f"10.0.1.{11 + i}", engines[i].render)
                  for i, name in enumerate(names)],
        meter=lambda: {"hourly_usd": 1.2323, "spend_usd": 312.47, "budget_usd": 1000.0,
                       "period": "month", "status": "ok", "reason": ""},
        missing=[],
        clock=lambda: ticks[0] * 2.0)


def between_scrapes(interval_s: float) -> None:
    ticks[0] += 1
    if ticks[0] > len(SCRIPT):
        STATE.write_text(json.dumps(shown[-1]))
        time.sleep(120)  # the test sends Ctrl-C here
        return
    for replica, tokens, ttft in SCRIPT[ticks[0]]:
        if tokens:
            engine = engines_of[replica]
            engine.begin()
            engine.end(10, tokens, ttft)


shown: list[dict] = []
engines_of: list[EngineMetrics] = []
_snapshot = top.snapshot


def snapshot(*args, **kwargs):
    shown.append(_snapshot(*args, **kwargs))
    return shown[-1]


def _sources(stack, **kw):
    sources = sources_for_stack(stack)
    engines_of.extend(r.fetch.__self__ for r in sources.replicas)
    return sources


top.sources_for_stack = _sources
top.between_scrapes = between_scrapes
top.snapshot = snapshot

if __name__ == "__main__":
    from dsinfra.cli.main import run

    sys.argv = ["dsinfra", *sys.argv[1:]]
    run()
