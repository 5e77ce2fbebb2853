"""The weights' S3 mirror against a moto S3 server on loopback: push once, fetch in parallel,
verified by SHA-256, resumed file by file (issue 15, item 3)."""

from __future__ import annotations

import os

import pytest

from dsinfra.errors import CloudError, UserError

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
URI = "s3://dsinfra-weights/mirror"


@pytest.fixture
def snapshot(tmp_path):
    """A snapshot-shaped folder: a multipart-sized shard, small JSON files, a subfolder."""
    src = tmp_path / "snapshot"
    (src / "original").mkdir(parents=True)
    (src / "model-00001-of-00001.safetensors").write_bytes(os.urandom(12 * 1024 * 1024 + 7))
    (src / "config.json").write_text('{"model_type": "qwen2"}')
    (src / "original" / "tokenizer.json").write_bytes(os.urandom(300_000))
    return src


@pytest.fixture
def bucket(aws, monkeypatch):
    from dsinfra.cloud import model_cache
    from dsinfra.cloud.aws import client

    monkeypatch.setattr(model_cache, "PART_BYTES", 5 * 1024 * 1024)  # multipart at 12 MB
    client("s3", "us-east-1").create_bucket(Bucket="dsinfra-weights")
    return model_cache


def _same_tree(a, b):
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_push_then_fetch_copies_every_file_verified(bucket, snapshot, tmp_path):
    seen = []
    pushed = bucket.push(snapshot, URI, MODEL, region="us-east-1")
    got = bucket.fetch(URI, MODEL, tmp_path / "cache", region="us-east-1",
                       progress=lambda done, total: seen.append((done, total)))
    _same_tree(snapshot, tmp_path / "cache")
    assert (pushed.files, got.files, got.skipped) == (3, 3, 0)
    assert got.bytes_transferred == got.bytes_total == pushed.bytes_total
    assert seen[-1] == (got.bytes_total, got.bytes_total)  # progress reaches the total
    keys = {o["Key"] for o in __import__("dsinfra.cloud.aws", fromlist=["client"]).client(
        "s3", "us-east-1").list_objects_v2(Bucket="dsinfra-weights")["Contents"]}
    assert f"mirror/{MODEL}/dsinfra-manifest.json" in keys


def test_a_second_fetch_resumes_only_what_is_missing_or_wrong(bucket, snapshot, tmp_path):
    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "cache"
    bucket.fetch(URI, MODEL, dest, region="us-east-1")
    (dest / "config.json").write_text("cut short")          # a damaged file
    (dest / "original" / "tokenizer.json").unlink()          # a missing one

    again = bucket.fetch(URI, MODEL, dest, region="us-east-1")

    assert (again.skipped, again.files) == (1, 3)  # the 12 MB shard was kept
    assert again.bytes_transferred == 300_000 + len('{"model_type": "qwen2"}')
    _same_tree(snapshot, dest)


def test_an_object_that_does_not_match_its_checksum_is_refused(bucket, snapshot, tmp_path):
    from dsinfra.cloud.aws import client

    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    client("s3", "us-east-1").put_object(Bucket="dsinfra-weights",
                                         Key=f"mirror/{MODEL}/config.json", Body=b"{}")
    with pytest.raises(CloudError, match="config.json .* does not match its manifest"):
        bucket.fetch(URI, MODEL, tmp_path / "cache", region="us-east-1")
    assert not (tmp_path / "cache" / "config.json").exists()
    assert not (tmp_path / "cache" / "config.json.part").exists()


def test_a_mirror_without_a_manifest_is_not_read_as_complete(bucket, tmp_path):
    with pytest.raises(CloudError, match="no complete mirror .* `dsinfra cache push`"):
        bucket.fetch(URI, MODEL, tmp_path / "cache", region="us-east-1")


@pytest.mark.parametrize("uri, model", [("s3://Bad_Bucket/x", MODEL),
                                        ("s3://ok-bucket/x", "not a model"),
                                        ("s3://ok-bucket/a\nb", MODEL)])
def test_bad_mirror_or_model_is_bad_input(uri, model, tmp_path):
    from dsinfra.cloud import model_cache

    with pytest.raises(UserError):
        model_cache.fetch(uri, model, tmp_path)


def test_cli_push_and_fetch_report_json(bucket, snapshot, tmp_path):
    import json

    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    runner = CliRunner()
    pushed = runner.invoke(app, ["cache", "push", MODEL, "--to", URI, "--from", str(snapshot),
                                 "--region", "us-east-1", "--json"])
    assert pushed.exit_code == 0, pushed.output
    fetched = runner.invoke(app, ["cache", "fetch", MODEL, "--from", URI, "--to",
                                  str(tmp_path / "c"), "--region", "us-east-1", "--json"])
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["files"] == json.loads(pushed.stdout)["files"] == 3
    _same_tree(snapshot, tmp_path / "c")


def test_cli_push_to_a_bad_uri_exits_2_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["cache", "push", MODEL, "--to", "s3://Bad/x", "--from",
                                      str(tmp_path)])
    assert result.exit_code == 2
    assert "s3://bucket/prefix" in result.output and "Traceback" not in result.output
