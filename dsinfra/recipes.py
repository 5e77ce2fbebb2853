"""Engine recipes as data: per engine and model family, the flags and environment that the
engine's own published recipe adds, with the source beside them. ``bootstrap/engines/`` put
``flags`` on the engine's command line and ``env`` in its environment; ``dsinfra plan --json``
shows them per node role (``containers``). Pure data, no I/O.

To add a recipe: one ``Recipe`` in ``RECIPES``, most specific family first (the first whose
``pattern`` matches the model id's name wins)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsinfra.engines import engine_spec

VLLM_DEEPSEEK = "vllm-project/recipes, DeepSeek (DeepSeek-V3/R1: vllm serve ... " \
                "--trust-remote-code --enable-expert-parallel)"
VLLM_REASONING = "docs.vllm.ai, Reasoning Outputs (DeepSeek R1 series: --reasoning-parser " \
                 "deepseek_r1)"
SGLANG_DEEPSEEK = "docs.sglang.ai, DeepSeek Usage (python3 -m sglang.launch_server --model " \
                  "deepseek-ai/DeepSeek-V3 --tp 8 --trust-remote-code)"
SGLANG_REASONING = "docs.sglang.ai, Reasoning Parser (DeepSeek-R1 series: --reasoning-parser " \
                   "deepseek-r1)"
VLLM_MULTI_NODE = "docs.vllm.ai, Distributed Inference and Serving (run_cluster.sh sets " \
                  "VLLM_HOST_IP to each node's own address)"


@dataclass(frozen=True)
class Recipe:
    engine: str
    family: str
    pattern: str  # a regular expression on the model id's name, case-insensitive
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # fixed (name, value) pairs; never secrets
    sources: tuple[str, ...] = ()

    def matches(self, model: str) -> bool:
        return re.search(self.pattern, model.split("/")[-1], re.IGNORECASE) is not None


RECIPES: tuple[Recipe, ...] = (
    # R1's distilled dense models emit <think> like R1: without the parser it lands in the answer.
    Recipe("vllm", "deepseek-r1-distill", r"^DeepSeek-R1-Distill-",
           ("--reasoning-parser", "deepseek_r1"), sources=(VLLM_REASONING,)),
    Recipe("vllm", "deepseek-r1", r"^DeepSeek-R1(-[0-9]+)?\Z",
           ("--trust-remote-code", "--enable-expert-parallel", "--reasoning-parser",
            "deepseek_r1"), sources=(VLLM_DEEPSEEK, VLLM_REASONING)),
    Recipe("vllm", "deepseek-v3", r"^DeepSeek-V3",
           ("--trust-remote-code", "--enable-expert-parallel"), sources=(VLLM_DEEPSEEK,)),
    Recipe("sglang", "deepseek-r1-distill", r"^DeepSeek-R1-Distill-",
           ("--reasoning-parser", "deepseek-r1"), sources=(SGLANG_REASONING,)),
    Recipe("sglang", "deepseek-r1", r"^DeepSeek-R1(-[0-9]+)?\Z",
           ("--trust-remote-code", "--reasoning-parser", "deepseek-r1"),
           sources=(SGLANG_DEEPSEEK, SGLANG_REASONING)),
    Recipe("sglang", "deepseek-v3", r"^DeepSeek-V3", ("--trust-remote-code",),
           sources=(SGLANG_DEEPSEEK,)),
)


def recipe_for(engine: str, model: str) -> Recipe:
    """The first recipe of ``engine`` whose family matches ``model``; an empty one otherwise."""
    for recipe in RECIPES:
        if recipe.engine == engine and recipe.matches(model):
            return recipe
    return Recipe(engine, "generic", "", sources=())


def per_node_env(engine: str, nodes: int) -> tuple[str, ...]:
    """Names set per node where one engine spans nodes: the engine's ``per_node_env``
    (dsinfra/engines.py; multi-node vLLM: ``VLLM_HOST_IP``, per ``VLLM_MULTI_NODE``)."""
    return engine_spec(engine).per_node_env if nodes > 1 else ()
