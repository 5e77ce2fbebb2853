"""Inference engines behind one interface, keyed by the config's ``engine.name``.

An engine says what its container runs (``container_args``: the image and its arguments after
``docker run [options]``), which extra environment lines it reads the API key from, and
whether it speaks the OpenAI API (the health check then also asks ``/v1/models`` and a chat
completion), and which of its Prometheus metrics say it is serving (``metrics``: what the idle
watcher reads; None where dsinfra knows none). Its defaults (image, port, health path) are core
data, ``ENGINE_DEFAULTS`` in dsinfra/config.py. The shared unit, run script and env file stay
in bootstrap/engine.py.

To add an engine: one module here with one ``Engine`` subclass, one line in ``ENGINES``, its
name and defaults in dsinfra/config.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from dsinfra.idle import MetricNames

if TYPE_CHECKING:
    from dsinfra.bootstrap.engine import EnginePlan
    from dsinfra.bootstrap.hosts import HostSpec


class Engine(ABC):
    name: ClassVar[str]
    openai_compatible: ClassVar[bool] = True
    metrics: ClassVar[MetricNames | None] = None  # served on the API port's /metrics

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
