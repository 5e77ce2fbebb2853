"""Issue 24 item 2: every grammar matches the whole string (a trailing newline is not "the end"),
and an AWS account id is ASCII digits. Each value goes through the real parser the CLI uses."""

from __future__ import annotations

import pytest

from dsinfra import identifiers as ids
from dsinfra.config import parse_stack_config

BASE = {"tier": "dev", "instanceType": "g5.2xlarge", "budget": {"amountUsd": 10}}
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


@pytest.mark.parametrize("key, value", [
    ("model", "deepseek-ai/DeepSeek-R1\n"),
    ("modelCache", "s3://acme-weights/hf\n"),
    ("modelCache", "s3://corp-data/*"),
    ("modelCache", "s3://corp-data/a*b"),
    ("budget", {"amountUsd": 10, "notifyTopicArn": TOPIC + "\n"}),
    ("budget", {"amountUsd": 10, "notifyTopicArn":
                "arn:aws:sns:us-east-1:\u0967\u0968\u0969456789012:alerts"}),
])
def test_a_value_with_a_trailing_newline_or_non_ascii_digits_is_refused(key, value):
    from dsinfra.errors import UserError

    with pytest.raises(UserError) as refused:
        parse_stack_config("w", {**BASE, key: value})
    assert "\n" not in str(refused.value).strip() or "Traceback" not in str(refused.value)


@pytest.mark.parametrize("check, value", [
    (ids.hf_repo_id_problem, "org/name\n"),
    (ids.s3_uri_problem, "s3://bucket/prefix\n"),
    (ids.s3_uri_problem, "s3://bucket/*"),
    (ids.aws_region_problem, "us-east-1\n"),
    (ids.aws_region_problem, "us-east-\u0967"),
])
def test_identifier_checks_refuse_the_newline_and_unicode_digit_forms(check, value):
    assert check(value) is not None
    assert check(value.rstrip("\n").replace("\u0967", "1").replace("/*", "/p")) is None


def test_the_topic_grammar_is_one_rule_for_config_notify_and_the_node_watcher():
    assert ids.sns_topic_arn_ok(TOPIC)
    assert not ids.sns_topic_arn_ok(TOPIC + "\n")
    assert not ids.sns_topic_arn_ok(TOPIC.replace("1234", "\u0661\u0662\u0663\u0664"))


@pytest.mark.parametrize("address, ok", [
    ("fe80::1%eth0", True), ("fe80::1%3", True), ("fe80::1%eth0\n", False),
    ("fe80::1%eth\n0", False), ("fe80::1%", False), ("fe80::1%" + "e" * 16, False),
    ("fe80::1%et h0", False), ("10.0.0.5", True),
])
def test_an_ipv6_zone_id_is_an_interface_name_never_a_newline(address, ok):
    from dsinfra.bootstrap.inventory import _address

    if ok:
        assert _address(address) == address
    else:
        with pytest.raises(ValueError):
            _address(address)
