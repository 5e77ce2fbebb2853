"""The real grammars of the values dsinfra passes on: AWS tags, Hugging Face repo ids, network
exposure, and text that lands in a file or a command line on a host.

Each check returns the reason a value is refused (what is allowed), or ``None`` when it is fine,
so the config schema, the inventory schema and the bootstrap renderer can each word their own
error around the same rule.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable

# AWS tagging rules (docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html, "Tag naming
# limits and requirements"; the EC2 API's pattern ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$):
# key 1-128 Unicode characters, value 0-256, letters, separators, numbers and _ . : / = + - @.
TAG_KEY_MAX_CHARS = 128
TAG_VALUE_MAX_CHARS = 256
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
TAG_CHARS_ALLOWED = "letters, digits, spaces and _ . : / = + - @"

# huggingface_hub.utils.validate_repo_id: "namespace/repo_name", each part of [A-Za-z0-9_.-],
# not starting or ending with - or ., no "--" or "..", at most 96 characters, no ".git" suffix.
HF_REPO_ID_MAX_CHARS = 96
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?"
_HF_REPO_ID = re.compile(rf"{_HF_PART}/{_HF_PART}", re.ASCII)  # used with fullmatch
HF_REPO_ID_ALLOWED = ("a Hugging Face repo id org/name (letters, digits, _ . -, not starting or "
                      "ending with . or -, no -- or .., at most 96 characters)")

# A network exposure wider than one /8's share of its address family is refused: 2**-8 of
# IPv4 (16,777,216 addresses) or of IPv6, whatever mix of CIDR blocks adds up to it.
MAX_EXPOSURE_SHARE = 2 ** -8


def aws_tag_key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX_CHARS \
            or not _tag_chars_ok(key):
        return f"an AWS tag key: 1-{TAG_KEY_MAX_CHARS} characters, {TAG_CHARS_ALLOWED}"
    if key.lower().startswith("aws:"):
        return "a tag key not starting with aws: (reserved by AWS)"
    return None


def aws_tag_value_problem(value: object, *, min_chars: int = 0) -> str | None:
    if not isinstance(value, str) or not min_chars <= len(value) <= TAG_VALUE_MAX_CHARS \
            or not _tag_chars_ok(value):
        return (f"an AWS tag value: {min_chars}-{TAG_VALUE_MAX_CHARS} characters, "
                f"{TAG_CHARS_ALLOWED}")
    return None


def _tag_chars_ok(text: str) -> bool:
    return all(ch in _TAG_PUNCTUATION or unicodedata.category(ch)[0] in "LZN" for ch in text)


def hf_repo_id_problem(model: object) -> str | None:
    if not isinstance(model, str) or len(model) > HF_REPO_ID_MAX_CHARS \
            or not _HF_REPO_ID.fullmatch(model) or "--" in model or ".." in model \
            or model.endswith(".git"):
        return HF_REPO_ID_ALLOWED
    return None


def host_text_problem(value: object, *, max_chars: int = 1024) -> str | None:
    """Text written into a unit file, an env file or a command line on a host: one line of
    printable characters, so it cannot start a new line (a new directive or variable)."""
    if not isinstance(value, str) or len(value) > max_chars:
        return f"a string of at most {max_chars} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        return "one line of printable characters (no control or format characters)"
    return None


def exposure_problem(cidrs: Iterable[str]) -> str | None:
    """Refuse CIDR blocks that together open more than a /8's share of IPv4 or of IPv6.

    Overlaps are counted once (``collapse_addresses``), so ``[0.0.0.0/1, 128.0.0.0/1]`` is the
    whole internet, as it is."""
    by_version: dict[int, list] = {4: [], 6: []}
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        by_version[network.version].append(network)
    for version, networks in by_version.items():
        if not networks:
            continue
        covered = sum(n.num_addresses for n in ipaddress.collapse_addresses(networks))
        share = covered / (2 ** (32 if version == 4 else 128))
        if share > MAX_EXPOSURE_SHARE:
            return (f"CIDR blocks that together cover at most a /8's share of the IPv{version} "
                    f"address space (these cover {share:.3%}; the whole internet split into "
                    "pieces is still the whole internet)")
    return None


# S3 bucket names (docs.aws.amazon.com, "General purpose bucket naming rules"): 3-63 of
# lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no
# "..", not an IP address. The prefix names a folder: S3's safe key characters without "*"
# (an IAM resource ``arn:aws:s3:::bucket/prefix/*`` built from ``prefix*`` would grant the whole
# bucket), no "..", no leading "/", no empty folder name ("a//b").
_S3_BUCKET = r"[a-z0-9](?:[a-z0-9.\-]{1,61})[a-z0-9]"
_S3_URI = re.compile(rf"s3://({_S3_BUCKET})(?:/([A-Za-z0-9!_.'()/\-]{{0,900}}))?", re.ASCII)
S3_URI_ALLOWED = ("s3://bucket/prefix naming a folder (bucket: 3-63 lowercase letters, digits, "
                  ". and -; prefix: letters, digits and ! _ . ' ( ) / -, no wildcard, no empty "
                  "folder name)")


def s3_uri_problem(uri: object) -> str | None:
    """None when ``uri`` is an ``s3://bucket[/prefix]`` that can reach a unit file safely."""
    if not isinstance(uri, str):
        return S3_URI_ALLOWED
    match = _S3_URI.fullmatch(uri)
    if not match or ".." in uri or "//" in uri[5:] \
            or re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", match.group(1)):
        return S3_URI_ALLOWED
    return None


# SNS topic ARNs (docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html: names of 1-256
# letters, digits, _ and -, ".fifo" for FIFO topics; the account id is 12 ASCII digits).
SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}"
                           r"(?:\.fifo)?", re.ASCII)  # used with fullmatch


def sns_topic_arn_ok(value: object) -> bool:
    return isinstance(value, str) and SNS_TOPIC_ARN.fullmatch(value) is not None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without trailing slash) of a valid ``s3://`` URI."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


# AWS region names: us-east-1, ap-southeast-4, us-gov-west-1, eu-isoe-west-1 ...
_AWS_REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}", re.ASCII)
AWS_REGION_ALLOWED = "an AWS region name such as us-east-1 (letters, '-', a number)"


def aws_region_problem(region: object) -> str | None:
    """None when ``region`` has the grammar of an AWS region name."""
    if isinstance(region, str) and _AWS_REGION.fullmatch(region):
        return None
    return AWS_REGION_ALLOWED
