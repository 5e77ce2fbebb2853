"""Issue 24 item 5 (brief E): inputs that ended in a traceback or a hang now end in one line
with their exit code, within a whole-operation deadline. Local servers on loopback only."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

runner = CliRunner()


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Answers 200, then one body byte per second: every read is within urllib's timeout."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "60")
        self.end_headers()
        for _ in range(60):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)

    def log_message(self, *args):  # noqa: ANN002
        pass


@pytest.fixture
def trickle():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_webhook_that_trickles_bytes_fails_at_the_whole_send_deadline(trickle):
    from dsinfra.cloud.notify import Notifier

    failures = Notifier(webhook_url=trickle, timeout_s=2).send("subject", "text")
    # Without the whole-send deadline the 60-byte answer arrives complete and counts as sent.
    assert failures == ["webhook: no complete answer within 2 s"]


def test_every_cron_entry_carries_a_timeout_as_the_systemd_unit_does():
    from dsinfra.schedule import cron_line, job_timeout_s, systemd_units

    for every in ("1m", "15m", "2h"):
        line = cron_line(every, ["/usr/bin/dsinfra", "cost", "check"], "/e", "/l")
        assert f"alarm shift @ARGV; exec @ARGV or die $!' {job_timeout_s(every)} " \
               "/usr/bin/dsinfra cost check" in line
        service = systemd_units(every, ["/usr/bin/dsinfra"], "/e")["dsinfra-cost-check.service"]
        assert f"TimeoutStartSec={job_timeout_s(every)}" in service


@pytest.mark.parametrize("name", ["DSINFRA_CHECK_DEADLINE_S", "DSINFRA_CHECK_INTERVAL_S"])
@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-inf", "1e999", "0", "-5", "9" * 5000,
                                   "\u0661\u0662"])
def test_a_bad_check_env_var_is_one_line_and_exit_2_before_any_check(monkeypatch, state_dir,
                                                                      name, value):
    monkeypatch.setenv(name, value)
    out = runner.invoke(app, ["cost", "check", "--json"])
    assert out.exit_code == 2, out.output
    assert name in out.output and "Traceback" not in out.output
    assert len(out.stdout.strip().splitlines()) == 1  # the --json error object
    assert len(out.stderr.strip().splitlines()) == 1  # the one line for a person


class _Html(http.server.BaseHTTPRequestHandler):
    """A captive portal or proxy: 200 with an HTML page for every request."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>Sign in to the hotel Wi-Fi<br></body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # noqa: ANN002
        pass


@pytest.fixture
def html_ec2(monkeypatch):
    import boto3

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def factory(service, region=None):
        return boto3.client(service, region_name=region or "us-east-1", endpoint_url=url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    yield factory
    server.shutdown()


def test_capacity_offers_answered_with_html_is_one_cloud_error(html_ec2):
    from dsinfra.errors import CloudError
    from dsinfra.ops.capacity import capacity_offers

    with pytest.raises(CloudError, match="DescribeCapacityBlockOfferings in us-east-1 failed"):
        capacity_offers("p5.48xlarge", 1, 24, ["us-east-1"], factory=html_ec2)


def test_a_buy_answered_with_html_says_the_block_may_be_bought_and_audits_it(html_ec2):
    from dsinfra.errors import CloudError
    from dsinfra.ops.capacity import buy

    offering = {"offering_id": "cb-0123456789abcdef", "region": "us-east-1",
                "instance_type": "p5.48xlarge", "count": 1, "upfront_usd": 100.0}
    records = []
    with pytest.raises(CloudError, match="may have been bought"):
        buy(offering, "100", factory=html_ec2,
            audit=lambda kind, **fields: records.append((kind, fields.get("result"))))
    assert records == [("capacity.buy.intent", None), ("capacity.buy.result", "unknown")]


def test_a_state_dir_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(blocker / "state"))
    out = runner.invoke(app, ["cost", "audit"])
    assert out.exit_code == 2 and "state directory" in out.output, out.output
    assert "Traceback" not in out.output


def test_cost_audit_escapes_bidi_and_control_characters(state_dir):
    from dsinfra.ops.local import audit_log

    audit_log().append("check", stack="ab\u202ecd\x1b[31m", action="notify", result="ok",
                      reason="r\u2066x")
    out = runner.invoke(app, ["cost", "audit"])
    assert out.exit_code == 0, out.output
    assert "\u202e" not in out.output and "\x1b[31m" not in out.output
    assert "\\u202e" in out.output and "\\u2066" in out.output
