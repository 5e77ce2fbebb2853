"""Inference engines behind one interface, keyed by the config's ``engine.name``.

An engine module says what its container runs (``container_args``: the image and its arguments
after ``docker run [options]``) and which extra environment lines it reads the API key from.
What an engine *is* (default image, port and health path, whether it speaks the OpenAI API,
the Prometheus metrics the idle watcher reads, the peers' port across nodes, per-node
variables) is core data, its ``EngineSpec`` in ``ENGINE_SPECS`` (dsinfra/engines.py), read
here through ``spec``. The shared unit, run script and env file stay in bootstrap/engine.py.

To add an engine: its row in ``ENGINE_SPECS``, one module here with one ``Engine`` subclass,
its line in ``_registry``, and its defaults in Pulumi.yaml (docs/ARCHITECTURE.md, "Where to
add things")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from dsinfra.engines import EngineSpec, engine_spec
from dsinfra.idle import MetricNames

if TYPE_CHECKING:
    from dsinfra.bootstrap.engine import EnginePlan
    from dsinfra.bootstrap.hosts import HostSpec


class Engine(ABC):
    name: ClassVar[str]

    @property
    def spec(self) -> EngineSpec:
        return engine_spec(self.name)

    @property
    def openai_compatible(self) -> bool:
        return self.spec.openai_compatible

    @property
    def metrics(self) -> MetricNames | None:
        """Served on the API port's /metrics; None where dsinfra knows none."""
        return self.spec.metrics

    @abstractmethod
    def container_args(self, plan: "EnginePlan", host: "HostSpec") -> list[str]:
        """The engine's arguments after the image: model, parallelism, port, recipe flags."""

    def env_lines(self, api_key: str) -> list[str]:
        """Environment lines beyond the shared ones (``DSINFRA_API_KEY``, ``API_KEY``, ...)."""
        return []


def _registry() -> dict[str, Engine]:
    from dsinfra.bootstrap.engines.custom import Custom
    from dsinfra.bootstrap.engines.sglang import SGLang
    from dsinfra.bootstrap.engines.vllm import VLLM

    return {engine.name: engine for engine in (VLLM(), SGLang(), Custom())}


ENGINES: dict[str, Engine] = _registry()


def engine_for(name: str) -> Engine:
    """The engine called ``name``; the config schema only lets known names through."""
    return ENGINES[name]
