"""Notifications: one URL (``DSINFRA_WEBHOOK_URL``) and/or an SNS topic.

The URL is sent through apprise (https://github.com/caronc/apprise), which speaks Slack, Teams,
Discord, email, PagerDuty, Opsgenie and ~100 more from one URL scheme (``slack://``,
``mailto://``, ``pagerduty://``, or a service's own https webhook URL): a maintained library
instead of one hand-written POST per service. A plain http(s) URL that apprise does not claim
gets the Slack-compatible JSON POST ``{"text": ...}``; that is also all the in-account Lambda
can send (its runtime has boto3 only, no apprise).

The URL is a secret: it is validated when read (one line, exit 2, redacted), never printed,
logged or put in an error message; ``redact`` strips it from any text that might carry it.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

PERMISSIONS = ("sns:Publish",)
URL_ENV = "DSINFRA_WEBHOOK_URL"
ALLOWED = ("an http(s) webhook URL, or an apprise URL such as slack://..., msteams://..., "
           "mailto://..., pagerduty://... (https://github.com/caronc/apprise/wiki)")


def redacted(url: str) -> str:
    """What may be shown of a notification URL: its scheme, and the host of an http(s) one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.hostname}/<redacted>"
    return f"{parts.scheme}://<redacted>" if parts.scheme else "<redacted>"


def redact(text: str, url: str | None = None) -> str:
    """``text`` with the notification URL (and its path, which holds the token) removed."""
    url = url if url is not None else os.environ.get(URL_ENV)
    if not url or not text:
        return text
    out = text.replace(url, redacted(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    for secret in (parts.path, parts.query, parts.netloc if parts.scheme not in
                   ("http", "https") else parts.password or ""):
        if secret and len(secret) > 3:
            out = out.replace(secret, "<redacted>")
    return out


def _apprise():
    try:
        import apprise
    except ImportError:  # the Lambda runtime: plain webhooks only
        return None
    logging.getLogger("apprise").propagate = False  # its log lines may carry the URL's host
    logging.getLogger("apprise").addHandler(logging.NullHandler())
    return apprise


def validate_url(url: str) -> str:
    """``url`` if it can be sent to; else UserError naming the variable, redacted."""
    from dsinfra.errors import UserError

    parts = urlsplit(url) if "://" in url else None
    plain = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
    apprise = _apprise()
    if plain or (apprise is not None and parts is not None and
                 apprise.Apprise.instantiate(url) is not None):
        return url
    raise UserError(f"invalid value for {URL_ENV}: {redacted(url)!r}; allowed: {ALLOWED}"
                    + ("" if apprise is not None else " (here: http(s) only, apprise is not "
                       "installed)"))


@dataclass(frozen=True)
class Notifier:
    webhook_url: str | None = None
    sns_topic_arn: str | None = None
    region: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> "Notifier":
        url = os.environ.get(URL_ENV) or None
        topic = os.environ.get("DSINFRA_SNS_TOPIC_ARN") or None
        from dsinfra.identifiers import sns_topic_arn_ok

        if topic and not sns_topic_arn_ok(topic):
            from dsinfra.errors import UserError

            raise UserError(f"invalid value for DSINFRA_SNS_TOPIC_ARN: {topic!r}; allowed: an "
                            "SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:alerts")
        return cls(validate_url(url) if url else None, topic)

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or self.sns_topic_arn)

    def send(self, subject: str, text: str) -> list[str]:
        """Send to every configured channel; returns the failures (empty when all went),
        each free of the URL."""
        failures = []
        if self.webhook_url:
            failure = self._send_url_within(subject, text)
            if failure:
                failures.append(redact(failure, self.webhook_url))
        if self.sns_topic_arn:
            failures += self._send_sns(subject, text)
        return failures

    def _send_url_within(self, subject: str, text: str) -> str | None:
        """``_send_url`` within ``timeout_s`` in all: urllib's and apprise's timeouts are per
        read, so a server answering one byte every few seconds would hold the check past its
        own deadline. The send runs in a daemon thread; past the deadline it is abandoned
        (the process exits without waiting for it) and the notice counts as failed."""
        import threading

        outcome: list[str | None] = []

        def send() -> None:
            try:
                outcome.append(self._send_url(subject, text))
            except Exception as exc:  # noqa: BLE001 - any crash is a failed, retried notice
                outcome.append(f"webhook: {type(exc).__name__}")

        worker = threading.Thread(target=send, name="dsinfra-webhook", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive() or not outcome:
            return f"webhook: no complete answer within {self.timeout_s:g} s"
        return outcome[0]

    def _send_url(self, subject: str, text: str) -> str | None:
        apprise = _apprise()
        if apprise is not None and apprise.Apprise.instantiate(self.webhook_url) is not None:
            sender = apprise.Apprise()
            sender.add(self.webhook_url)
            ok = sender.notify(title=subject, body=text)
            return None if ok else f"notification to {redacted(self.webhook_url)} failed"
        body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
        request = urllib.request.Request(self.webhook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as exc:
            status = getattr(exc, "code", None)
            return f"webhook: HTTP {status}" if status else "webhook: unreachable"
        return None

    def _send_sns(self, subject: str, text: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        from dsinfra.cloud.aws import client

        region = self.region or self.sns_topic_arn.split(":")[3]
        try:
            client("sns", region).publish(TopicArn=self.sns_topic_arn,
                                          Subject=subject[:100], Message=text)
        except (BotoCoreError, ClientError) as exc:
            return [f"sns: {type(exc).__name__}"]
        return []
