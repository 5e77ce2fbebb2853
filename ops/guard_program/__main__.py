"""Wires the guard stack's config to the BudgetGuard component; nothing else lives here."""

import os

import pulumi

from dsinfra.infra.guard import BudgetGuard
from dsinfra.ops.guard import guard_args

config = pulumi.Config("dsinfra-guard")
aws_region = pulumi.Config("aws").get("region") or "us-east-1"
regions = config.get_object("regions") or [aws_region]
every = config.get_int("everyMinutes") or 15
guard = BudgetGuard("dsinfra", guard_args(
    regions,
    every_minutes=every,
    enforce=config.get_bool("enforce") or False,
    # `dsinfra guard deploy` passes the webhook through the environment; either way a secret.
    webhook_url=config.get_secret("webhookUrl") or (
        pulumi.Output.secret(os.environ["DSINFRA_WEBHOOK_URL"])
        if os.environ.get("DSINFRA_WEBHOOK_URL") else None),
    sns_topic_arn=config.get("snsTopicArn"),
))
pulumi.export("table_name", guard.table.name)
pulumi.export("function_name", guard.function.name)
pulumi.export("schedule_name", guard.schedule.name)
# What `up` reads back so that adding a stack's region keeps the regions already covered.
pulumi.export("regions", regions)
pulumi.export("every_minutes", every)
pulumi.export("enforce", config.get_bool("enforce") or False)
