"""Imports every command module so their commands attach to the root app."""

from dsinfra.cli import plan  # noqa: F401
from dsinfra.cli import stacks  # noqa: F401
