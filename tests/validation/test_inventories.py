"""Inventory files: every host value checked before any SSH connection is tried."""

from __future__ import annotations

import pytest
import yaml

from dsinfra.bootstrap.hosts import load_inventory
from dsinfra.errors import ConfigError, UserError

HOST = {"address": "10.0.0.5", "role": "head", "instance_type": "g5.xlarge"}
FINGERPRINT = "SHA256:" + "A" * 43


def _write(tmp_path, document) -> object:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


@pytest.mark.parametrize(("document", "key"), [
    ({"hosts": [HOST], "config": [1]}, "config"),
    ({"hosts": [{**HOST, "host_key": 12345}]}, "hosts[0].host_key"),
    ({"hosts": [{**HOST, "host_key": "ssh-ed25519 !!!notbase64"}]}, "hosts[0].host_key"),
    ({"hosts": [{**HOST, "port": 22.5}]}, "hosts[0].port"),
    ({"hosts": [{**HOST, "port": "22"}]}, "hosts[0].port"),
    ({"hosts": [{**HOST, "port": True}]}, "hosts[0].port"),
    ({"hosts": [{**HOST, "address": ["a"]}]}, "hosts[0].address"),
    ({"hosts": [{**HOST, "address": "bad host\nname"}]}, "hosts[0].address"),
    ({"hosts": [{**HOST, "address": "-oProxyCommand=sh"}]}, "hosts[0].address"),
    ({"hosts": [{**HOST, "user": "root; rm -rf /"}]}, "hosts[0].user"),
    ({"hosts": [{**HOST, "name": "../../etc/passwd"}]}, "hosts[0].name"),
    ({"hosts": [{**HOST, "key": "missing/id_ed25519"}]}, "hosts[0].key"),
    ({"hosts": [{**HOST, "gateway": {"address": "b", "port": 0}}]}, "hosts[0].gateway.port"),
    ({"hosts": [{**HOST, "gateway": "ops@bastion:ssh"}]}, "hosts[0].gateway"),
    ({"hosts": [{**HOST, "instance_id": "i-xyz"}]}, "hosts[0].instance_id"),
    ({"hosts": []}, "hosts"),
    ({"hosts": "gpu-0"}, "hosts"),
    ({"hosts": [HOST], "extra": 1}, "extra"),
    ([1, 2], "<inventory>"),
])
def test_bad_inventory_values_name_the_key(tmp_path, document, key):
    with pytest.raises(ConfigError) as caught:
        load_inventory(_write(tmp_path, document))
    assert caught.value.key == key, str(caught.value)
    assert "allowed:" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("raw", "needle"), [
    (b"\x7fELF\x02\x01\x01\x00\x00", "unacceptable character"),  # ASCII, so UTF-8
    (b"\x1f\x8b\x08\x00\xff\xff", "not UTF-8"),                     # gzip
    ("hosts: [a]\n".encode("utf-16"), "not UTF-8")])
def test_binary_inventory_files_are_user_errors(tmp_path, raw, needle):
    path = tmp_path / "hosts.yaml"
    path.write_bytes(raw)
    with pytest.raises(UserError, match=needle):
        load_inventory(path)


def test_a_valid_inventory_with_key_pins_and_gateway_loads(tmp_path):
    (tmp_path / "id").write_text("key\n")
    document = {"config": {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}, "hosts": [
        {**HOST, "name": "gpu-0", "key": "id", "host_key": FINGERPRINT, "port": 2222,
         "gateway": {"address": "203.0.113.10", "user": "ops", "host_key": FINGERPRINT}},
        {**HOST, "address": "gpu-1.internal.example.com", "role": "worker"}]}
    config, hosts = load_inventory(_write(tmp_path, document))
    assert config == {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}
    assert [h.name for h in hosts] == ["gpu-0", "gpu-1.internal.example.com"]
    assert hosts[0].key_path == tmp_path / "id" and hosts[0].port == 2222
    assert hosts[0].gateway.user == "ops" and hosts[0].gateway.host_key == FINGERPRINT


@pytest.mark.parametrize(("stack", "ok"), [("hosts_prod", True), ("lab.gpu-1", True),
                                           ("../../secrets/x", False), ("a b", False)])
def test_an_inventory_name_must_be_safe_as_a_file_name(stack, ok):
    from dsinfra.config import parse_stack_config

    values = {"tier": "dev", "budget": {"amountUsd": 0}}
    if ok:
        assert parse_stack_config(stack, values).stack == stack
    else:
        with pytest.raises(ConfigError, match="dsinfra:stack"):
            parse_stack_config(stack, values)
