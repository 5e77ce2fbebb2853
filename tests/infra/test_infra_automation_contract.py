"""Contract test for ``infra/automation.py``: the real Automation API and Pulumi CLI against a
local file backend, with a tiny program that creates no cloud resources.

It runs only where the ``pulumi`` CLI is on PATH (CI images with Pulumi, a developer laptop);
the CLI cannot be installed on the project's build machines, where it is skipped.
"""

from __future__ import annotations

import shutil
import sys
import textwrap

import pytest

from dsinfra.infra.automation import PulumiEngine

pytestmark = [
    pytest.mark.pulumi_cli,
    pytest.mark.skipif(shutil.which("pulumi") is None,
                       reason="needs the Pulumi CLI on PATH (https://www.pulumi.com/docs/install/)"),
]

PROGRAM = textwrap.dedent('''
    import pulumi

    class Box(pulumi.ComponentResource):
        def __init__(self, name, opts=None):
            super().__init__("contract:index:Box", name, None, opts)
            self.register_outputs({})

    Box("box")
    pulumi.export("greeting", pulumi.Config().get("greeting") or "none")
''')


@pytest.fixture
def engine(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: contract\n"
        f"runtime:\n  name: python\n  options:\n    virtualenv: {sys.prefix}\n")
    (project / "__main__.py").write_text(PROGRAM)
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
           "PULUMI_CONFIG_PASSPHRASE": "contract-test-only", "PULUMI_SKIP_UPDATE_CHECK": "true"}
    (tmp_path / "state").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return PulumiEngine(project, env_vars=env)


def test_engine_previews_ups_reads_outputs_and_destroys(engine):
    engine.set_config("test", "contract:greeting", "hello")
    events: list[dict] = []
    preview = engine.preview("test", on_event=events.append)
    assert {"type": "contract:index:Box", "name": "box"}.items() <= preview.resources[0].items()
    assert preview.change_summary.get("create", 0) >= 1
    assert any(e["kind"] == "resource_pre_event" for e in events)

    assert engine.up("test")["greeting"] == "hello"
    assert engine.outputs("test") == {"greeting": "hello"}

    engine.destroy("test")
    assert engine.outputs("test") == {}
