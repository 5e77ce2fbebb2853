"""``BudgetGuard``: the cost check living in the account, so budgets hold with no laptop on.

EventBridge Scheduler invokes a Lambda every few minutes; the Lambda runs the same check code
as ``dsinfra cost check`` (ops/guard_lambda.py) with its ledger, audit log and locks in one
DynamoDB table. Its role lists exactly the IAM actions the check's inventory and actions
declare (dsinfra.cloud.*.PERMISSIONS; ops/guard.py passes them in with the Lambda's code), and
the destructive ones only on resources that carry the ``dsinfra:stack`` tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from dsinfra import budget_actions


def guard_policy(table_arn: str, log_group_arn: str, sns_topic_arn: str | None,
                 args: "BudgetGuardArgs") -> dict:
    """The Lambda role's policy, as ``args.policy`` builds it from the action registry
    (cloud/actions.py, passed in by ops/guard.py): exactly the declared permissions, every
    destructive one only on ``dsinfra:stack``-tagged resources, nothing wildcarded."""
    return args.policy(table_arn=table_arn, log_group_arn=log_group_arn,
                       sns_topic_arn=sns_topic_arn)


@dataclass
class BudgetGuardArgs:
    regions: list[str]  # where the guard looks for stacks
    # What the Lambda runs and may do; ops/guard.py's guard_args fills these from cloud/.
    # (table_arn=, log_group_arn=, sns_topic_arn=) -> the role's policy document
    policy: Callable[..., dict]
    code: dict[str, Path]  # path inside the Lambda zip -> source file
    handler: str
    every_minutes: int = 15  # the overspend past a budget stays within one interval's burn
    enforce: bool = False  # False: the guard meters, decides and audits, but never acts
    # default: every onExceed action of the table (dsinfra/budget_actions.py)
    allowed_actions: tuple[str, ...] = field(default_factory=budget_actions.on_exceed)
    webhook_url: pulumi.Input[str] | None = None  # a secret: pass pulumi.Output.secret
    sns_topic_arn: str | None = None
    timeout_s: int = 600
    memory_mb: int = 512
    tags: dict[str, str] = field(default_factory=dict)


def schedule_expression(every_minutes: int) -> str:
    if not 1 <= every_minutes <= 1440:
        raise ValueError(f"every_minutes={every_minutes!r}; allowed: 1-1440")
    return f"rate({every_minutes} minute{'' if every_minutes == 1 else 's'})"


def _assume(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


class BudgetGuard(pulumi.ComponentResource):
    def __init__(self, name: str, args: BudgetGuardArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:guard:BudgetGuard", name, None, opts)
        self._name, self._args = name, args
        tags = {"Name": f"{name}-guard", **args.tags, "dsinfra:component": "budget-guard"}
        self.table = aws.dynamodb.Table(
            f"{name}-state", billing_mode="PAY_PER_REQUEST", hash_key="pk", range_key="sk",
            attributes=[aws.dynamodb.TableAttributeArgs(name="pk", type="S"),
                        aws.dynamodb.TableAttributeArgs(name="sk", type="S")],
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/lambda/{name}-budget-guard", retention_in_days=90,
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.role = self._create_role(tags)
        self.function = self._create_function(tags)
        self.schedule = self._create_schedule()
        self.dead_man, self.errors_alarm = self._create_alarms(tags)
        self.register_outputs({"table_name": self.table.name,
                               "function_name": self.function.name,
                               "role_arn": self.role.arn,
                               "schedule_name": self.schedule.name})

    def _create_role(self, tags: dict[str, str]) -> aws.iam.Role:
        role = aws.iam.Role(f"{self._name}-role", assume_role_policy=_assume("lambda.amazonaws.com"),
                            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        policy = pulumi.Output.all(self.table.arn, self.log_group.arn).apply(
            lambda arns: json.dumps(guard_policy(arns[0], arns[1], self._args.sns_topic_arn,
                                                 self._args)))
        self.policy = aws.iam.RolePolicy(f"{self._name}-policy", role=role.id, policy=policy,
                                         opts=pulumi.ResourceOptions(parent=self))
        return role

    def _create_function(self, tags: dict[str, str]) -> aws.lambda_.Function:
        args = self._args
        env = {"DSINFRA_GUARD_TABLE": self.table.name, "DSINFRA_REGIONS": ",".join(args.regions),
               "DSINFRA_GUARD_ENFORCE": "true" if args.enforce else "false",
               "DSINFRA_CHECK_INTERVAL_S": str(args.every_minutes * 60)}
        if args.webhook_url is not None:
            env["DSINFRA_WEBHOOK_URL"] = args.webhook_url
        if args.sns_topic_arn:
            env["DSINFRA_SNS_TOPIC_ARN"] = args.sns_topic_arn
        code = pulumi.AssetArchive({path: pulumi.FileAsset(str(source))
                                    for path, source in args.code.items()})
        return aws.lambda_.Function(
            f"{self._name}-fn", name=f"{self._name}-budget-guard", runtime="python3.12",
            handler=args.handler, role=self.role.arn, code=code, timeout=args.timeout_s,
            memory_size=args.memory_mb, reserved_concurrent_executions=1,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=env), tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy, self.log_group]))

    def _create_alarms(self, tags: dict[str, str]):
        """The dead-man switch: the guard's own runs are watched by CloudWatch, which needs
        nothing of the guard to fire. No invocation for two intervals (missing data counts
        as breaching) or any failed run alarms to the SNS topic."""
        period_s = max(60, self._args.every_minutes * 60)
        actions = [self._args.sns_topic_arn] if self._args.sns_topic_arn else []
        common = dict(namespace="AWS/Lambda", statistic="Sum", period=period_s,
                      dimensions={"FunctionName": self.function.name}, alarm_actions=actions,
                      ok_actions=actions, tags=tags,
                      opts=pulumi.ResourceOptions(parent=self))
        dead_man = aws.cloudwatch.MetricAlarm(
            f"{self._name}-checks-stopped", metric_name="Invocations", evaluation_periods=2,
            comparison_operator="LessThanThreshold", threshold=1,
            treat_missing_data="breaching",
            alarm_description="dsinfra budget guard: no check ran for two intervals; budgets "
                              "are not being enforced", **common)
        errors = aws.cloudwatch.MetricAlarm(
            f"{self._name}-checks-failing", metric_name="Errors", evaluation_periods=1,
            comparison_operator="GreaterThanThreshold", threshold=0,
            treat_missing_data="notBreaching",
            alarm_description="dsinfra budget guard: a check failed", **common)
        return dead_man, errors

    def _create_schedule(self) -> aws.scheduler.Schedule:
        invoker = aws.iam.Role(f"{self._name}-scheduler",
                               assume_role_policy=_assume("scheduler.amazonaws.com"),
                               opts=pulumi.ResourceOptions(parent=self))
        aws.iam.RolePolicy(
            f"{self._name}-scheduler-invoke", role=invoker.id,
            policy=self.function.arn.apply(lambda arn: json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": arn}]})),
            opts=pulumi.ResourceOptions(parent=self))
        return aws.scheduler.Schedule(
            f"{self._name}-schedule",
            schedule_expression=schedule_expression(self._args.every_minutes),
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=self.function.arn, role_arn=invoker.arn,
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=0)),  # the next tick is the retry
            opts=pulumi.ResourceOptions(parent=self))
