"""Any image: its own command (or its entrypoint), its own port and health path. Not assumed
to speak the OpenAI API, so health is ``healthPath`` answering 200."""

from __future__ import annotations

from dsinfra.bootstrap.engines import Engine


class Custom(Engine):
    name = "custom"

    def container_args(self, plan, host) -> list[str]:
        return [plan.image, *(plan.command or ())]
