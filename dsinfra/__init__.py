"""dsinfra: serve DeepSeek on your own AWS account.

This package is the pure core shared by the Pulumi program (``dsinfra.infra``), the host
bootstrap (``dsinfra.bootstrap``) and the CLI (``dsinfra.cli``): stack config schema, the
instance catalog and its dated prices, the tag contract and cost arithmetic. Nothing here
makes a cloud call.
"""

__version__ = "0.1.0"
