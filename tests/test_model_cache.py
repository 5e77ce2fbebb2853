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
    """The same files (the copy's verification stamp aside)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()
                           and p.name != ".dsinfra-verified.json")
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


def _count_hashes(monkeypatch, module) -> list[str]:
    hashed: list[str] = []
    real = module._Tree.sha256  # the node-side copy hashes through its no-follow tree
    monkeypatch.setattr(module._Tree, "sha256",
                        lambda tree, rel: hashed.append(rel.rsplit("/", 1)[-1]) or real(tree, rel))
    return hashed


def test_a_verified_copy_is_checked_again_without_hashing_a_byte(bucket, snapshot, tmp_path,
                                                                 monkeypatch):
    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "cache"
    bucket.fetch(URI, MODEL, dest, region="us-east-1")
    hashed = _count_hashes(monkeypatch, bucket)

    state = bucket.verify(URI, MODEL, dest, region="us-east-1")
    again = bucket.fetch(URI, MODEL, dest, region="us-east-1")

    assert state["complete"] is True and state["files"] == 3
    assert (again.skipped, again.bytes_transferred) == (3, 0)
    assert hashed == []  # sizes and mtimes against the stamp, not SHA-256 over the weights


def test_a_file_changed_after_it_was_verified_is_hashed_and_replaced(bucket, snapshot, tmp_path,
                                                                     monkeypatch):
    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "cache"
    bucket.fetch(URI, MODEL, dest, region="us-east-1")
    shard = dest / "model-00001-of-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # same size, new mtime: the stamp no longer vouches for it
    shard.write_bytes(bytes(data))
    hashed = _count_hashes(monkeypatch, bucket)

    assert bucket.verify(URI, MODEL, dest, region="us-east-1")["unverified"] == 1
    again = bucket.fetch(URI, MODEL, dest, region="us-east-1")

    assert again.skipped == 2 and again.bytes_transferred == shard.stat().st_size
    assert hashed.count("model-00001-of-00001.safetensors") == 1  # the old copy, once
    _same_tree(snapshot, dest)


def test_a_mirror_pushed_again_makes_the_copy_incomplete(bucket, snapshot, tmp_path):
    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "cache"
    bucket.fetch(URI, MODEL, dest, region="us-east-1")
    (snapshot / "generation_config.json").write_text('{"temperature": 0.6}')
    bucket.push(snapshot, URI, MODEL, region="us-east-1")

    state = bucket.verify(URI, MODEL, dest, region="us-east-1")

    assert (state["complete"], state["manifest_current"], state["first_unverified"]) == \
        (False, False, ["generation_config.json"])


def test_a_mismatch_keeps_the_other_files_verified_for_the_next_run(bucket, snapshot, tmp_path):
    from dsinfra.cloud.aws import client

    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    client("s3", "us-east-1").put_object(Bucket="dsinfra-weights",
                                         Key=f"mirror/{MODEL}/config.json", Body=b"{}")
    with pytest.raises(CloudError):
        bucket.fetch(URI, MODEL, tmp_path / "cache", region="us-east-1")
    state = bucket.verify(URI, MODEL, tmp_path / "cache", region="us-east-1")
    assert state["complete"] is False and state["first_unverified"] == ["config.json"]
    assert state["unverified"] == 1  # the shard and the tokenizer were kept and stamped


def test_the_node_entry_point_prints_progress_then_one_result_line(bucket, snapshot, tmp_path,
                                                                   capsys):
    import json

    bucket.push(snapshot, URI, MODEL, region="us-east-1")
    code = bucket.main(["fetch", "--from", URI, "--model", MODEL, "--to",
                        str(tmp_path / "cache"), "--interval", "0"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert code == 0
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["bytes_done"] == progress[-1]["bytes_total"]
    assert events[-1]["event"] == "done" and events[-1]["files"] == 3
    assert bucket.main(["verify", "--from", URI, "--model", MODEL, "--to",
                        str(tmp_path / "cache")]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] is True


def test_the_node_entry_point_reports_an_error_in_one_line_and_exit_3(bucket, tmp_path, capsys):
    import json

    code = bucket.main(["fetch", "--from", URI, "--model", MODEL, "--to", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 3 and len(lines) == 1
    assert json.loads(lines[0])["event"] == "error"
    assert "no complete mirror" in json.loads(lines[0])["error"]
