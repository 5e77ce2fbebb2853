"""Imports every command module so their commands attach to the root app."""

from dsinfra.cli import plan  # noqa: F401
from dsinfra.cli import stacks  # noqa: F401
from dsinfra.cli import size  # noqa: F401
from dsinfra.cli import advise  # noqa: F401
from dsinfra.cli import doctor  # noqa: F401
from dsinfra.cli import up  # noqa: F401
from dsinfra.cli import bootstrap  # noqa: F401
from dsinfra.cli import catalog_cmd, cost, down, guard, schedule, status  # noqa: F401
from dsinfra.cli import host  # noqa: F401
