"""The NCCL log judge (issue 25 item 2): ``dsinfra host check --nccl-log FILE`` and bootstrap's
``nccl-network`` step run the same function, bootstrap/nccl_log.py's judge_nccl_log.

Every line judged here is rendered from the printf format at the upstream tag it comes from
(tests/fixtures/nccl/upstream-formats.json, SOURCE.md beside it), for every aws-ofi-nccl
release from 1.7 and every NCCL from 2.18 the images ship; the public thread recordings
(tests/fixtures/nccl/*.log) are judged as they were printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsinfra.bootstrap.nccl_log import LOG_PATTERN, judge_nccl_log

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nccl"
FORMATS = json.loads((FIXTURES / "upstream-formats.json").read_text())
OFI_TAGS = [t for t in FORMATS["aws-ofi-nccl"] if t not in ("v1.4.0aws", "v1.5.0-aws")]
NCCL_TAGS = list(FORMATS["nccl"])


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in tag.lstrip("v").split("-")[0].replace("aws", "").split(".")
                 if p)


def info(nccl_tag: str, message: str, *, host: str = "ip-10-1-2-3", pid: int = 4242,
         tid: int = 4250, dev: int = 0) -> str:
    """One INFO line as that NCCL's src/debug.cc writes it."""
    entry = FORMATS["nccl"][nccl_tag]
    level = entry["info_prefix"]["format"].replace("\\n", "\n")  # the C escape, as printed
    if entry["host_pid_tid"]:  # split since v2.26: who, then level (v2.29: level + message)
        who = entry["host_pid_tid"]["format"] % (host, pid, tid)
        if "%s" in level:
            return who + (level % (dev, message)).rstrip("\n")
        return who + level % dev + message
    return level % (host, pid, tid, dev) + message


def provider_line(ofi_tag: str, provider: str, fabric: str, nics: int) -> str:
    fmt = FORMATS["aws-ofi-nccl"][ofi_tag]["prefix"]["format"] + \
        FORMATS["aws-ofi-nccl"][ofi_tag]["provider"]["format"]
    count = fmt.count("%")
    return fmt % ((provider,) if count == 1 else (provider, nics) if count == 2
                  else (provider, fabric, nics))


def network_line(nccl_tag: str, name: str) -> str:
    return FORMATS["nccl"][nccl_tag]["using_network"]["format"] % name


def two_nodes(ofi_tag: str, nccl_tag: str, *, provider="efa", fabric="efa-direct",
              network=None, socket_on_worker=False) -> str:
    names = FORMATS["aws-ofi-nccl"][ofi_tag]["nvidia_net_names"]
    network = network or ("Libfabric" if "Libfabric" in names else names[0])
    lines = []
    for host, pid in (("ip-10-1-2-3", 4242), ("ip-10-1-2-4", 5151)):
        lines.append(info(nccl_tag, provider_line(ofi_tag, provider, fabric, 32), host=host,
                          pid=pid))
        net = "Socket" if socket_on_worker and host.endswith("4") else network
        for dev in range(2):
            lines.append(info(nccl_tag, network_line(nccl_tag, net), host=host, pid=pid,
                              dev=dev))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("ofi_tag", OFI_TAGS)
@pytest.mark.parametrize("nccl_tag", NCCL_TAGS)
def test_every_shipped_pair_on_efa_is_accepted(ofi_tag, nccl_tag):
    for name in FORMATS["aws-ofi-nccl"][ofi_tag]["nvidia_net_names"]:
        for fabric in ("efa", "efa-direct"):
            found, problem = judge_nccl_log(two_nodes(ofi_tag, nccl_tag, fabric=fabric,
                                                      network=name))
            assert problem is None, (ofi_tag, nccl_tag, name, found.problems())
            assert found.providers == ("efa",) and len(found.communicators) == 4


@pytest.mark.parametrize("ofi_tag", ["v1.7.3-aws", "v1.13.2-aws", "v1.14.0", "v1.16.3"])
@pytest.mark.parametrize("nccl_tag", ["v2.18.5-1", "v2.27.7-1"])
def test_a_socket_communicator_or_another_provider_is_a_fallback(ofi_tag, nccl_tag):
    found, problem = judge_nccl_log(two_nodes(ofi_tag, nccl_tag, socket_on_worker=True))
    assert problem and "fell back to TCP sockets" in problem
    assert any("ip-10-1-2-4:5151: communicator on network Socket" in p
               for p in found.problems())
    found, problem = judge_nccl_log(two_nodes(ofi_tag, nccl_tag, provider="tcp"))
    assert problem and "OFI provider tcp" in problem
    if FORMATS["aws-ofi-nccl"][ofi_tag]["provider"]["format"].count("%") == 3:
        found, problem = judge_nccl_log(two_nodes(ofi_tag, nccl_tag, fabric="172.31.0.0/16"))
        assert problem and "fabric 172.31.0.0/16" in problem


def test_the_current_line_that_the_old_parser_missed():
    """aws-ofi-nccl >= 1.14 says "provider" in lower case with the fabric: the 2023-era parser
    found "OFI provider(s) none" and failed a working EFA stack."""
    log = two_nodes("v1.16.3", "v2.27.7-1")
    assert "NET/OFI Selected provider is efa, fabric is efa-direct (found 32 nics)" in log
    found, problem = judge_nccl_log(log)
    assert problem is None and found.fabrics == ("efa-direct",)


@pytest.mark.parametrize("nccl_tag", ["v2.18.5-1", "v2.27.7-1", "v2.29.7-1"])
def test_no_plugin_found_is_a_fallback_at_each_nccl(nccl_tag):
    entry = FORMATS["nccl"][nccl_tag]["no_plugin"][-1]["format"]
    # Arguments as plugin_open.cc passes them: the plugin kind, the names it tried, and (2.29)
    # the separator before an empty fallback text (the net plugin has none since 2.27).
    args = {0: (), 3: ("NET", " libnccl-net.so", ""), 4: ("NET", " libnccl-net.so", "", "")}
    message = entry % args[entry.count("%s")]
    log = info(nccl_tag, message) + "\n" + info(nccl_tag, network_line(nccl_tag, "Socket"))
    found, problem = judge_nccl_log(log)
    assert found.plugin_missing == ("ip-10-1-2-3:4242",)
    assert problem and "NCCL_NET_PLUGIN" in problem


def test_bootstrap_greps_every_line_the_judge_reads():
    import re

    log = two_nodes("v1.16.3", "v2.27.7-1", socket_on_worker=True) + info(
        "v2.27.7-1", "NET/Plugin: Could not find: libnccl-net.so. ")
    kept = "\n".join(l for l in log.splitlines() if re.search(LOG_PATTERN, l))
    assert judge_nccl_log(kept)[0].to_dict() == judge_nccl_log(log)[0].to_dict()


@pytest.mark.parametrize("name,ok", [("ofi-efa-libfabric.log", True),
                                     ("ofi-efa-aws-libfabric.log", True),
                                     ("socket-fallback.log", False)])
def test_public_recordings(name, ok):
    assert (judge_nccl_log((FIXTURES / name).read_text())[1] is None) is ok


def _host_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsinfra.cli", "host", "check", *args],
                          capture_output=True, text=True, timeout=60)


def test_host_check_nccl_log_exit_codes(tmp_path):
    good, bad = tmp_path / "good.log", tmp_path / "bad.log"
    good.write_text(two_nodes("v1.16.3", "v2.27.7-1"))
    bad.write_text(two_nodes("v1.16.3", "v2.27.7-1", socket_on_worker=True))

    done = _host_check("--nccl-log", str(good), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["fabrics"] == ["efa-direct"] and report["communicators"] == 4

    done = _host_check("--nccl-log", str(bad))
    assert done.returncode == 3 and "fell back to TCP sockets" in done.stdout

    empty = tmp_path / "empty.log"
    empty.write_text("vLLM started\n")
    for args in (["--nccl-log", str(empty)], ["--nccl-log", str(tmp_path / "missing.log")],
                 ["--nccl-log", str(good), "--instance-type", "p5.48xlarge"]):
        done = _host_check(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "--nccl-log" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


H200 = FIXTURES / "h200-lent"  # our recording, NCCL 2.28.9 (its SOURCE.md)


@pytest.mark.parametrize("name,looked_for", [
    ("no-plugin-env.log", "Could not find: libnccl-net.so"),
    ("plugin-env-ofi.log", "Could not find: ofi libnccl-net-ofi.so")])
def test_a_real_nccl_without_the_plugin_is_judged_a_fallback(name, looked_for):
    """What NCCL 2.28.9 printed on the lent H200 (no aws-ofi-nccl there): the judge reads the
    real prefix and no-plugin line, and NCCL_NET_PLUGIN=ofi made it look for
    libnccl-net-ofi.so, the file name EFA installer 1.44+ gives the plugin."""
    text = (H200 / name).read_text()
    assert f"NCCL INFO NET/Plugin: {looked_for}" in text
    found, problem = judge_nccl_log(text)
    process = "vm:451" if name.startswith("no") else "vm:479"
    assert found.networks == ("Socket",) and found.plugin_missing == (process,)
    assert problem and "fell back to TCP sockets" in problem


def test_the_rendered_2_28_lines_match_the_recorded_ones():
    """The upstream format at v2.28.9-1, rendered, prints as NCCL 2.28.9 printed it."""
    recorded = (H200 / "no-plugin-env.log").read_text().splitlines()
    rendered = info("v2.28.9-1", network_line("v2.28.9-1", "Socket"), host="vm", pid=451,
                    tid=451, dev=0)
    assert rendered in recorded
