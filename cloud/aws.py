"""boto3 clients, made one way: standard retries with backoff for throttling and 5xx, and the
endpoint taken from boto3's own ``AWS_ENDPOINT_URL`` so any emulator (moto server) can stand
in for AWS without the code under test knowing."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_ATTEMPTS = 8


@lru_cache(maxsize=None)
def _session():
    import boto3

    return boto3.session.Session()


def client(service: str, region: str | None = None) -> Any:
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    user_agent_extra="dsinfra")
    return _session().client(service, region_name=region, config=config)


def reset_session() -> None:
    """Forget the cached session (tests switch endpoints and credentials between cases)."""
    _session.cache_clear()
