"""boto3 clients, made one way: standard retries with backoff for throttling and 5xx, and the
endpoint taken from boto3's own ``AWS_ENDPOINT_URL`` so any emulator (moto server) can stand
in for AWS without the code under test knowing."""

from __future__ import annotations

from datetime import datetime, timezone
import threading
from functools import lru_cache
from typing import Any

MAX_ATTEMPTS = 8
# botocore's defaults (60 s each, 8 attempts) let one hung endpoint hold a check for over 8
# minutes; a check must end well inside its interval.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 20
DEADLINE_ENV = "DSINFRA_CHECK_DEADLINE_S"
_deadline: list[float] = []  # monotonic time after which no AWS call starts


def set_deadline(seconds: float | None) -> None:
    """No AWS call starts later than ``seconds`` from now (None: no deadline)."""
    import time

    _deadline[:] = [] if seconds is None else [time.monotonic() + seconds]


def _check_deadline(**_: Any) -> None:
    import time

    if _deadline and time.monotonic() > _deadline[0]:
        from botocore.exceptions import BotoCoreError

        class DeadlineExceeded(BotoCoreError):
            fmt = "the check's deadline passed (connect/read timeouts and retries included)"

        raise DeadlineExceeded()


def _timestamp(value: Any):
    """botocore's timestamp parser, with the ISO 8601 form AWS sends parsed by the standard
    library: dateutil's general parser was a tenth of a large check's client-side time."""
    if isinstance(value, str) and "T" in value:
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z")
                                            else value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


_CLIENT_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _loader(data_path: str | None) -> Any:
    """botocore's reader of its service models (static files): kept across ``reset_session``,
    which only has to forget endpoints and credentials. A new session's own loader parses
    EC2's model again, ~0.25 s of CPU each time a test switched endpoints."""
    from botocore.loaders import create_loader

    return create_loader(data_path)


@lru_cache(maxsize=None)
def _session():
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _loader(core.get_config_variable("data_path")))
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_timestamp)
    return boto3.session.Session(botocore_session=core)


def client(service: str, region: str | None = None) -> Any:
    from botocore.config import Config

    config = Config(retries={"mode": "standard", **_attempts()},
                    connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    user_agent_extra="dsinfra")
    with _CLIENT_LOCK:  # a session is not thread-safe; the clients it makes are
        made = _session().client(service, region_name=region, config=config)
    made.meta.events.register("before-send", _check_deadline)  # every attempt, retries too
    made.meta.events.register("after-call", _refuse_html)
    return made


def _attempts() -> dict[str, int]:
    """MAX_ATTEMPTS retries, unless the user set boto's own ``AWS_MAX_ATTEMPTS`` (attempts in
    all, the first included), which a Config would otherwise override."""
    import os

    value = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if value.isdigit() and int(value) > 0:
        return {"total_max_attempts": int(value)}
    return {"max_attempts": MAX_ATTEMPTS}


def _refuse_html(http_response: Any = None, model: Any = None, **_: Any) -> None:
    """A successful (2xx) answer that is an HTML page is not AWS's answer, whatever botocore
    made of it: its XML parser reads ``<!DOCTYPE html>`` as a document with none of the
    operation's fields ({}), and its JSON parser turns any body into ``{}``; both would read
    as "nothing here". Raise instead, so the caller fails loudly."""
    if http_response is None or not 200 <= http_response.status_code < 300 or \
            getattr(model, "has_streaming_output", False) or \
            getattr(http_response, "raw", None) is None:
        return  # a streamed body (S3 GetObject) is the caller's; a Stubber answer has none
    if is_html_page(http_response.content):
        operation = getattr(model, "name", "the call")
        raise UnreadableAnswer(f"{operation} answered with an HTML page (HTTP "
                               f"{http_response.status_code}), not an AWS answer")


def is_html_page(body: bytes | None) -> bool:
    """The body decides, not the Content-Type: some emulators label XML answers text/html."""
    return (body or b"")[:256].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def on_retry(made: Any, callback) -> Any:
    """Call ``callback(operation, attempt, max_attempts)`` before each retry ``made`` sends,
    so a command can say it is retrying instead of waiting in silence. botocore's retry
    handler numbers the attempts in the request's context (the same numbers it sends in the
    ``amz-sdk-request`` header)."""
    def _before_send(request: Any, event_name: str = "", **_: Any) -> None:
        retries = (getattr(request, "context", None) or {}).get("retries") or {}
        attempt = int(retries.get("attempt", 1))
        if attempt > 1:
            callback(event_name.rsplit(".", 1)[-1] or "the call", attempt,
                     int(retries.get("max", MAX_ATTEMPTS)))

    made.meta.events.register("before-send", _before_send)
    return made


class UnreadableAnswer(Exception):
    """An answer that parsed but lacks what the operation always returns: a JSON-protocol
    API (the tagging API) answered by an HTML page parses to ``{}`` in botocore, which would
    otherwise read as "nothing here"."""


def read_errors() -> tuple[type[BaseException], ...]:
    """What an AWS read can raise when the answer is missing or unusable: botocore's own
    errors, AWS's errors, and an unparsable answer (``ResponseParserError``, which derives
    from ``Exception``, not ``BotoCoreError``: an HTML page in place of EC2's XML)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    return (BotoCoreError, ClientError, ResponseParserError, UnreadableAnswer)


def require_keys(answer: dict, operation: str, *keys: str) -> dict:
    """``answer`` when it carries every one of ``keys``; raises ``UnreadableAnswer`` else."""
    missing = [k for k in keys if k not in answer]
    if missing:
        raise UnreadableAnswer(f"{operation} answered without {', '.join(missing)}: not an "
                               "AWS answer (an HTML page or a proxy's reply?)")
    return answer


def reset_session() -> None:
    """Forget the cached session (tests switch endpoints and credentials between cases)."""
    _session.cache_clear()


def ec2_in(region: str) -> Any:
    """An EC2 client for ``region``, for ops/ to hand to a cloud function that takes one
    (cloud/spot_stop.py's run on the node kit too, where no dsinfra.cloud.aws exists): ops/
    never makes a client itself (tests/test_architecture.py)."""
    return client("ec2", region)


def has_credentials() -> bool:
    """Whether boto3's chain finds credentials now (a fresh session: the environment as it is
    at this call, not as the cached session saw it)."""
    import boto3

    return boto3.Session().get_credentials() is not None


def console_output(instance_id: str, region: str) -> str:
    """EC2 ``GetConsoleOutput`` of one instance, as AWS returns it (base64, as documented)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.errors import CloudError

    try:
        answer = client("ec2", region).get_console_output(InstanceId=instance_id, Latest=False)
    except (BotoCoreError, ClientError) as exc:
        raise CloudError(f"could not read the console output of {instance_id}: {exc}") from None
    return answer.get("Output") or ""


def one_line_error(exc: Exception, *, limit: int = 240) -> str:
    """A botocore error as one line: operation, HTTP status, AWS's code and message, attempts.

    An endpoint that is not AWS (a proxy, an emulator failing) answers with an HTML page that
    botocore puts into the message; that page is named, not printed."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return " ".join(str(exc).split())[:limit]
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    status, attempts = meta.get("HTTPStatusCode"), meta.get("RetryAttempts")
    message = " ".join(str(error.get("Message") or "").split())
    if message.lstrip().lower().startswith(("<!doctype", "<html", "<?xml")) or "<html" in message:
        message = "the endpoint answered with an HTML page, not an AWS error"
    code = str(error.get("Code") or "")
    operation = getattr(exc, "operation_name", "") or "the call"
    parts = [f"{operation} failed"]
    if status:
        parts.append(f"HTTP {status}")
    if code and code != str(status):
        parts.append(code)
    line = ", ".join(parts) + (f": {message}" if message else "")
    if attempts:
        line += f" ({int(attempts) + 1} attempts)"
    return line[:limit]


def caller_account(region: str | None) -> str | None:
    """The AWS account these credentials act in (STS GetCallerIdentity, which needs no IAM
    permission); None when it cannot be read: callers treat an unknown account as not
    covered, never as covered."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(client("sts", region or "us-east-1").get_caller_identity()["Account"])
    except (BotoCoreError, ClientError, KeyError):
        return None
