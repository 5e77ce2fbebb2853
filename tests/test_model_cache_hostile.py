"""Issue 24 items 1 and 4: the node-side copy runs as root, so it must never follow a link
that something else (the engine container, in the old layout) planted in the copy, and a
hostile or careless manifest must end in one line, never a traceback, a stamp turned into a
folder, or an unbounded download. moto S3 in server mode on loopback (tests/motoserver.py);
the links are planted in a tmp dir exactly as a process with write access to the copy would."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from dsinfra.errors import CloudError

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
URI = "s3://dsinfra-weights/mirror"
KEY = f"mirror/{MODEL}"


@pytest.fixture
def snapshot(tmp_path):
    src = tmp_path / "snapshot"
    (src / "original").mkdir(parents=True)
    (src / "model.safetensors").write_bytes(os.urandom(6 * 1024 * 1024 + 7))
    (src / "config.json").write_text('{"model_type": "qwen2"}')
    (src / "original" / "tokenizer.json").write_bytes(os.urandom(100_000))
    return src


@pytest.fixture
def mc(aws, monkeypatch):
    from dsinfra.cloud import model_cache
    from dsinfra.cloud.aws import client

    monkeypatch.setattr(model_cache, "PART_BYTES", 5 * 1024 * 1024)
    client("s3", "us-east-1").create_bucket(Bucket="dsinfra-weights")
    return model_cache


@pytest.fixture
def outside(tmp_path):
    """Files and a folder outside the copy, with their bytes, to show nothing there changes."""
    root = tmp_path / "outside"
    (root / "dir").mkdir(parents=True)
    (root / "victim").write_bytes(b"root must never write here\n")
    (root / "dir" / "keep").write_bytes(b"keep\n")
    return root


def _tree_bytes(root) -> dict:
    return {str(p.relative_to(root)): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_a_file_symlink_at_the_stamp_temp_file_is_replaced_not_followed(mc, snapshot, tmp_path,
                                                                          outside):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "copy"
    dest.mkdir()
    before = _tree_bytes(outside)
    (dest / ".dsinfra-verified.json.tmp").symlink_to(outside / "victim")

    mc.fetch(URI, MODEL, dest, region="us-east-1")

    assert _tree_bytes(outside) == before
    assert not (dest / ".dsinfra-verified.json").is_symlink()
    assert mc.verify(URI, MODEL, dest, region="us-east-1")["complete"] is True


def test_a_symlink_in_place_of_the_stamp_is_replaced_not_read_or_written(mc, snapshot, tmp_path,
                                                                          outside):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "copy"
    dest.mkdir()
    before = _tree_bytes(outside)
    (dest / ".dsinfra-verified.json").symlink_to(outside / "victim")

    mc.fetch(URI, MODEL, dest, region="us-east-1")

    assert _tree_bytes(outside) == before
    assert not (dest / ".dsinfra-verified.json").is_symlink()


def test_a_directory_symlink_inside_the_copy_is_refused_and_nothing_lands_outside(
        mc, snapshot, tmp_path, outside):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "copy"
    dest.mkdir()
    before = _tree_bytes(outside)
    (dest / "original").symlink_to(outside / "dir", target_is_directory=True)

    with pytest.raises(CloudError, match="symbolic link"):
        mc.fetch(URI, MODEL, dest, region="us-east-1")

    assert _tree_bytes(outside) == before
    assert not any(p.name.startswith("tokenizer") for p in (outside / "dir").iterdir())


def test_a_symlink_replacing_a_verified_file_is_replaced_and_its_target_untouched(
        mc, snapshot, tmp_path, outside):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "copy"
    mc.fetch(URI, MODEL, dest, region="us-east-1")
    before = _tree_bytes(outside)
    (dest / "config.json").unlink()
    (dest / "config.json").symlink_to(outside / "victim")
    # and one at a part file's name too, as a download would write it
    (dest / "model.safetensors").unlink()
    (dest / "model.safetensors.part").symlink_to(outside / "dir" / "keep")

    assert mc.verify(URI, MODEL, dest, region="us-east-1")["unverified"] == 2
    again = mc.fetch(URI, MODEL, dest, region="us-east-1")

    assert _tree_bytes(outside) == before
    assert again.skipped == 1
    for name in ("config.json", "model.safetensors"):
        assert not (dest / name).is_symlink()
        assert (dest / name).read_bytes() == (snapshot / name).read_bytes()


def test_a_symlink_as_the_copy_folder_itself_is_refused(mc, snapshot, tmp_path, outside):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    (tmp_path / "copy").symlink_to(outside / "dir", target_is_directory=True)
    before = _tree_bytes(outside)

    with pytest.raises(CloudError, match="symbolic link"):
        mc.fetch(URI, MODEL, tmp_path / "copy", region="us-east-1")
    assert _tree_bytes(outside) == before


# --- manifests at the door (issue 24 item 4) ---------------------------------------------

def _put_manifest(body) -> None:
    from dsinfra.cloud.aws import client

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    client("s3", "us-east-1").put_object(Bucket="dsinfra-weights",
                                         Key=f"{KEY}/dsinfra-manifest.json", Body=data)


def _entry(path, size=1, data=b"x"):
    return {"path": path, "size": size, "sha256": hashlib.sha256(data).hexdigest()}


HOSTILE = {
    "stamp as a folder": {"model": MODEL, "files": [_entry(".dsinfra-verified.json/x")]},
    "dot-slash stamp": {"model": MODEL, "files": [_entry("./.dsinfra-verified.json")]},
    "stamp temp": {"model": MODEL, "files": [_entry(".dsinfra-verified.json.tmp")]},
    "the manifest": {"model": MODEL, "files": [_entry("dsinfra-manifest.json")]},
    "no files": {"model": MODEL, "files": []},
    "another model": {"model": "evil/other", "files": [_entry("a")]},
    "no model": {"files": [_entry("a")]},
    "NUL in a path": {"model": MODEL, "files": [_entry("a\x00b")]},
    "absolute": {"model": MODEL, "files": [_entry("/etc/passwd")]},
    "dot-dot": {"model": MODEL, "files": [_entry("a/../../x")]},
    "empty part": {"model": MODEL, "files": [_entry("a//b")]},
    "file and folder": {"model": MODEL, "files": [_entry("a"), _entry("a/b")]},
    "twice": {"model": MODEL, "files": [_entry("a"), _entry("a")]},
    "part name of another": {"model": MODEL, "files": [_entry("a"), _entry("a.part")]},
    "negative size": {"model": MODEL, "files": [_entry("a", size=-1)]},
    "float size": {"model": MODEL, "files": [_entry("a", size=1.0)]},
    "bool size": {"model": MODEL, "files": [_entry("a", size=True)]},
    "huge size": {"model": MODEL, "files": [_entry("a", size=2 ** 60)]},
    "bad digest": {"model": MODEL, "files": [{"path": "a", "size": 1, "sha256": "zz"}]},
    "not an object": [1, 2],
    "entry not an object": {"model": MODEL, "files": ["a"]},
}
RAW = {
    "Infinity": b'{"model": "%s", "files": [{"path": "a", "size": Infinity, "sha256": "x"}]}',
    "1e400": b'{"model": "%s", "files": [{"path": "a", "size": 1e400, "sha256": "x"}]}',
    "NaN": b'{"model": "%s", "files": [{"path": "a", "size": NaN, "sha256": "x"}]}',
    "5000 digits": b'{"model": "%s", "files": [{"path": "a", "size": ' + b"9" * 5000
                   + b', "sha256": "x"}]}',
    "deep nesting": b'{"model": "%s", "files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "not JSON": b"<html>nope</html>",
}


@pytest.mark.parametrize("case", sorted(HOSTILE) + sorted(RAW))
def test_a_hostile_manifest_is_one_json_error_line_and_exit_3(mc, tmp_path, capsys, case):
    if case in HOSTILE:
        _put_manifest(HOSTILE[case])
    else:
        body = RAW[case]
        _put_manifest(body.replace(b"%s", MODEL.encode(), 1) if b"%s" in body[:40] else body)
    dest = tmp_path / "copy"
    for action in ("fetch", "verify"):
        code = mc.main([action, "--from", URI, "--model", MODEL, "--to", str(dest),
                        "--interval", "60"])
        lines = capsys.readouterr().out.strip().splitlines()
        assert code == 3, (case, lines)
        assert len(lines) == 1 and json.loads(lines[0])["event"] == "error"
        assert "not a valid dsinfra manifest" in json.loads(lines[0])["error"]
    assert not (dest / ".dsinfra-verified.json").is_dir()
    assert not [p for p in dest.rglob("*") if p.is_file()] if dest.exists() else True


def test_a_manifest_that_understates_a_size_fails_without_pulling_the_whole_object(
        mc, tmp_path, monkeypatch):
    from dsinfra.cloud.aws import client

    s3 = client("s3", "us-east-1")
    big = os.urandom(12 * 1024 * 1024)
    s3.put_object(Bucket="dsinfra-weights", Key=f"{KEY}/big.bin", Body=big)
    s3.put_object(Bucket="dsinfra-weights", Key=f"{KEY}/small.bin", Body=b"y" * 5000)
    _put_manifest({"model": MODEL, "files": [_entry("big.bin", 1000, big[:1000]),
                                             _entry("small.bin", 10, b"y" * 10)]})
    written: list[int] = []
    real = mc._PartFile.write
    monkeypatch.setattr(mc._PartFile, "write",
                        lambda self, data: written.append(len(data)) or real(self, data))

    with pytest.raises(CloudError):
        mc.fetch(URI, MODEL, tmp_path / "copy", region="us-east-1")
    # What reached the disk never exceeds the stated sizes.
    assert sum(written) <= 1000 + 10 + 2 * 256 * 1024
    for name, size in (("big.bin", 1000), ("small.bin", 10)):
        for found in (tmp_path / "copy").glob(name + "*"):
            assert found.stat().st_size <= size


def test_push_from_a_fetched_folder_leaves_out_the_manifest_and_the_stamp(mc, snapshot,
                                                                           tmp_path):
    mc.push(snapshot, URI, MODEL, region="us-east-1")
    dest = tmp_path / "copy"
    mc.fetch(URI, MODEL, dest, region="us-east-1")
    (dest / "dsinfra-manifest.json").write_text("{}")
    (dest / ".dsinfra-verified.json.tmp").write_text("{}")

    pushed = mc.push(dest, URI, MODEL, region="us-east-1")
    again = mc.fetch(URI, MODEL, tmp_path / "second", region="us-east-1")

    assert pushed.files == again.files == 3


@pytest.mark.parametrize("case", ["stamp as a folder", "no files", "another model",
                                  "file and folder"])
def test_cli_fetch_of_a_hostile_manifest_is_one_line_and_exit_3(mc, tmp_path, case):
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    _put_manifest(HOSTILE[case])
    for as_json in ([], ["--json"]):
        result = CliRunner().invoke(app, ["cache", "fetch", MODEL, "--from", URI, "--to",
                                          str(tmp_path / "c"), "--region", "us-east-1",
                                          *as_json])
        assert result.exit_code == 3, result.output
        assert "not a valid dsinfra manifest" in result.stderr
        errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.output  # (plus the progress bar)
