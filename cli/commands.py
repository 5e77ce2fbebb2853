"""Imports every command module so their commands attach to the root app."""

from dsinfra.cli import catalog_cmd, cost, down, schedule, stacks, status  # noqa: F401
