"""The ``dsinfra`` command. Command modules import only typer and the standard library at the
top: pulumi, pulumi_aws, boto3, pydantic and fabric load inside the commands that need them,
so ``dsinfra --help`` stays fast."""
