"""Entry point of the Pulumi program (``Pulumi.yaml``: ``main: infra/``). It only wires the
stack's config to the components; everything else lives in importable modules so tests and
``dsinfra plan`` can run it under mocks."""

from dsinfra.infra.program import main

main()
