"""How a bootstrap run reports progress: a callback object the caller passes in.

Bootstrap never draws anything itself: the ``dsinfra bootstrap`` command passes its live table
(``cli/bootstrap_display.py``), ``dsinfra up`` a line callback folded into its own display,
tests and the benchmark nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, Union

if TYPE_CHECKING:
    from dsinfra.bootstrap.plan import BootstrapReport


class BootstrapProgress(Protocol):
    def start(self, hosts: list[str], steps: list[str]) -> None:
        """The run begins: these hosts, these steps."""

    def update(self, host: str, step: str, note: str) -> None:
        """``host`` is at ``step``, doing ``note`` (called from the hosts' threads)."""

    def stop(self) -> None:
        """The run ended, normally or not (always called after ``start``)."""

    def summary(self, report: "BootstrapReport") -> None:
        """The run finished with ``report``."""


class LineProgress:
    """One line per host and step change, to a function taking a string."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        self.forward = forward

    def start(self, hosts: list[str], steps: list[str]) -> None:
        return None

    def update(self, host: str, step: str, note: str) -> None:
        self.forward(f"{host}: {step}: {note}")

    def stop(self) -> None:
        return None

    def summary(self, report: "BootstrapReport") -> None:
        return None


class NoProgress(LineProgress):
    def __init__(self) -> None:
        super().__init__(lambda _line: None)


Progress = Union[BootstrapProgress, Callable[[str], None], None]


def as_progress(progress: Progress) -> BootstrapProgress:
    """``None`` (or ``False``): nothing; a function: lines; otherwise the object itself."""
    if progress is None or progress is False:
        return NoProgress()
    if hasattr(progress, "update") and hasattr(progress, "start"):
        return progress  # type: ignore[return-value]
    if callable(progress):
        return LineProgress(progress)
    raise TypeError(f"progress must be a BootstrapProgress, a callable or None, not {progress!r}")
