"""Pulumi program fixtures: the real program run under ``pulumi.runtime.set_mocks``.

``run_offline`` installs the mocks before it imports the program, and each run uses a fresh
runtime context, so the runs are shared for the session (each takes a fraction of a second
once the SDK is imported) and several stacks run in one process, as ``dsinfra plan`` may.
"""

from __future__ import annotations

import pytest

from offline_stacks import SHIPPED, VARIANTS, run_stack


@pytest.fixture(scope="session")
def runs():
    """Every shipped stack and variant, run once per session."""
    return {name: run_stack(name) for name in (*SHIPPED, *VARIANTS)}
