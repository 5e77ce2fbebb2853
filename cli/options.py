"""Settings every ``Typer`` of the ``dsinfra`` command shares. A leaf module: command modules
import it instead of ``cli/main.py``, so ``main`` can import them without a circle."""

from __future__ import annotations

# Help rendering through rich costs ~0.25 s of imports; plain help keeps `--help` fast.
TYPER_OPTIONS = dict(rich_markup_mode=None, pretty_exceptions_enable=False,
                     no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
