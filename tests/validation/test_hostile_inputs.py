"""Issue 24 item 5: inputs that ended in a traceback, a hang or a 600 MB read now end in one
line with exit 2 (each through the function the CLI calls)."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import UserError

BASE = {"tier": "dev", "instanceType": "g5.2xlarge", "budget": {"amountUsd": 10}}
BLOCK = {"availabilityZone": "us-east-1a", "instanceType": "p5.48xlarge", "instanceCount": 1,
         "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
RESERVED = {"instanceType": "p5.48xlarge", "capacityReservationId": "cr-0123456789abcdef0"}


@pytest.mark.parametrize("values, key", [
    ({"idleMinutes": 10 ** 400}, "idleMinutes"),
    ({"idleMinutes": "9" * 400}, "idleMinutes"),
    ({**RESERVED, "capacityBlock": "[" * 100_000}, "capacityBlock"),
    ({**RESERVED, "capacityBlock": "[" * 3000 + "]" * 3000}, "capacityBlock"),
    ({**RESERVED, "capacityBlock": {**BLOCK, "end": "0001-01-01T00:00:00Z"}}, "capacityBlock"),
    ({**RESERVED, "capacityBlock": {**BLOCK, "start": "0001-01-01T00:00:00Z",
                                    "end": "0001-01-01T02:00:00Z"}}, "capacityBlock"),
    ({**RESERVED, "capacityBlock": {**BLOCK, "end": "2025-12-31T00:00:00Z"}}, "capacityBlock"),
    ({**RESERVED, "capacityBlock": {**BLOCK, "end": BLOCK["start"]}}, "capacityBlock"),
])
def test_a_hostile_stack_value_is_one_user_error_naming_the_key(values, key):
    with pytest.raises(UserError) as refused:
        parse_stack_config("w", {**BASE, **values})
    assert key in str(refused.value)


def test_a_5000_digit_integer_in_config_json_is_bad_input(tmp_path):
    from dsinfra.models import shape_from_config_file

    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match="not readable JSON"):
        shape_from_config_file(path)


def test_a_600_mb_config_json_is_refused_without_reading_it_whole(tmp_path):
    from dsinfra.models import shape_from_config_file

    path = tmp_path / "config.json"
    with open(path, "wb") as handle:
        handle.truncate(600 * 1024 * 1024)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="larger than 1,048,576 bytes"):
            shape_from_config_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the cap plus one byte, not 600 MB


def test_a_fifo_as_config_json_is_refused_not_waited_on(tmp_path):
    from dsinfra.models import shape_from_config_file

    path = tmp_path / "config.json"
    os.mkfifo(path)
    with pytest.raises(UserError, match="not a regular file"):
        shape_from_config_file(path)
