"""Stack files and inventories are read with bounds: duplicate keys, alias bombs, deep nesting,
huge or non-UTF-8 files all end in one line and exit 2, quickly."""

from __future__ import annotations

import json

import time

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.errors import UserError
from dsinfra.yamlfile import MAX_FILE_BYTES, load_yaml_file, load_yaml_text

from .conftest import VALID_STACK, write_stack

runner = CliRunner()


def _alias_bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijklm"[:levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def test_duplicate_protect_key_is_refused_not_silently_overridden(project):
    write_stack(project, "dup", VALID_STACK + "  dsinfra:protect: true\n  dsinfra:protect: false\n")
    result = runner.invoke(app, ["plan", "dup", "--json"])
    assert result.exit_code == 2, result.output
    assert "'dsinfra:protect' appears twice" in result.output and "line 5 and line 6" in \
        result.output
    assert "Traceback" not in result.output
    assert set(json.loads(result.stdout)) <= {"error", "exit_status", "hint"}  # no plan


def test_an_alias_bomb_is_refused_within_a_second():
    started = time.monotonic()
    with pytest.raises(UserError, match="once aliases are expanded"):
        load_yaml_text(_alias_bomb(), source="stack file x")
    assert time.monotonic() - started < 1.0


def test_a_recursive_alias_is_refused():
    with pytest.raises(UserError, match="refers to a node that contains it"):
        load_yaml_text("a: &a [1, *a]\n", source="x")


def test_aliases_and_merge_keys_within_bounds_still_work():
    data = load_yaml_text("base: &b {amountUsd: 5}\nbudget:\n  <<: *b\n  period: month\n",
                          source="x")
    assert data["budget"] == {"amountUsd": 5, "period": "month"}


@pytest.mark.parametrize("text", ["[" * 20_000 + "]" * 20_000, "a:\n" + "".join(
    f"{'  ' * (i + 1)}k{i}:\n" for i in range(200))])
def test_deep_nesting_is_refused_without_a_recursion_error(text):
    with pytest.raises(UserError, match="nested deeper than"):
        load_yaml_text(text, source="x")


@pytest.mark.parametrize("raw", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",                       # binary
    "config:\n  dsinfra:owner: J\xfcrgen\n".encode("latin-1"),    # latin-1
    "config:\n  dsinfra:tier: dev\n".encode("utf-16"),            # UTF-16 with a BOM
])
def test_non_utf8_stack_files_exit_2_with_one_line(project, raw):
    write_stack(project, "enc", raw)
    result = runner.invoke(app, ["plan", "enc"])
    assert result.exit_code == 2, result.output
    assert "not UTF-8 text" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_utf8_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_yaml_file(path, what="stack file") == {"a": 1}


def test_a_file_over_the_size_bound_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(UserError, match="at most 262,144 bytes"):
        load_yaml_file(path, what="stack file")


def test_control_characters_are_refused_by_the_yaml_reader():
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml_text("a: \x00\n", source="x")
