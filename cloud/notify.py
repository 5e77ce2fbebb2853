"""Notifications: a Slack-compatible webhook (JSON ``{"text": ...}`` POST) and/or an SNS topic.
The webhook URL is a secret: it is never printed, logged or put in an error message."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

PERMISSIONS = ("sns:Publish",)


@dataclass(frozen=True)
class Notifier:
    webhook_url: str | None = None
    sns_topic_arn: str | None = None
    region: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> "Notifier":
        return cls(os.environ.get("DSINFRA_WEBHOOK_URL") or None,
                   os.environ.get("DSINFRA_SNS_TOPIC_ARN") or None)

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or self.sns_topic_arn)

    def send(self, subject: str, text: str) -> list[str]:
        """Send to every configured channel; returns the failures (empty when all went)."""
        failures = []
        if self.webhook_url:
            body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
            request = urllib.request.Request(self.webhook_url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    answer.read()
            except (urllib.error.URLError, OSError) as exc:
                status = getattr(exc, "code", None)
                failures.append(f"webhook: HTTP {status}" if status else "webhook: unreachable")
        if self.sns_topic_arn:
            from botocore.exceptions import BotoCoreError, ClientError

            from dsinfra.cloud.aws import client

            region = self.region or self.sns_topic_arn.split(":")[3]
            try:
                client("sns", region).publish(TopicArn=self.sns_topic_arn,
                                              Subject=subject[:100], Message=text)
            except (BotoCoreError, ClientError) as exc:
                failures.append(f"sns: {type(exc).__name__}")
        return failures
