"""The managed-unit helper (bootstrap/units.py): every service bootstrap installs renders its
unit through one grammar check, so a value that slipped past its own schema cannot add a
directive, and the three steps keep their state in typed fields (issue 26 item 4)."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap import idle_watch, steps_engine, steps_spot
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.plan import HostPlan
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.bootstrap.units import ManagedUnit, UnitValueError, render_unit
from dsinfra.config import parse_stack_config
from dsinfra.recipes import Recipe

ROOT = Path(__file__).resolve().parents[2]
HOSTS = [HostSpec(name="gpu-0", address="10.0.0.5", role="head", instance_type="g5.2xlarge")]
CONFIG = parse_stack_config("s", {"tier": "dev", "budget": {"amountUsd": 100}, "spot": True})


def _plan() -> HostPlan:
    return HostPlan(host=HOSTS[0], engine=eng.engine_plan(CONFIG, HOSTS),
                    secrets=Secrets(api_key="k", hf_token=None),
                    idle_watch=idle_watch.idle_watch_for(CONFIG), spot=True)


@pytest.mark.parametrize("value", ["a\nExecStartPre=/bin/id", "a\rb", "a\\", "a\x00b",
                                   "a\u2028b", "x" * 5000])
def test_a_value_that_breaks_the_line_grammar_never_reaches_a_unit_file(value):
    with pytest.raises(UnitValueError) as caught:
        render_unit([("Service", [("ExecStart", value)])])
    assert "ExecStart" in caught.value.detail and "nothing installed" in caught.value.detail
    with pytest.raises(UnitValueError):
        render_unit([("Unit", [("Description", "ok")])], comments=(value,))


@pytest.mark.parametrize("section, key", [("Unit]\n[Service", "X"), ("Service", "Exec Start"),
                                          ("Service", "ExecStart=x")])
def test_section_and_key_names_are_systemds(section, key):
    with pytest.raises(UnitValueError):
        render_unit([(section, [(key, "v")])])


def test_a_recipe_source_with_a_newline_is_refused_at_render():
    plan = replace(_plan().engine, recipe=Recipe("vllm", "x", "", sources=("a\n[Service]",)))
    with pytest.raises(UnitValueError, match="comment"):
        eng.systemd_unit(plan)


@pytest.mark.parametrize("name, files", [("sshd.service", {}), ("dsinfra-x.service; id", {}),
                                         ("dsinfra-x.service", {"/etc/a b": ("", "0644")}),
                                         ("dsinfra-x.service", {"/etc/../x": ("", "0644")}),
                                         ("dsinfra-x.service", {"/etc/x": ("", "644; id")})])
def test_a_managed_unit_names_only_dsinfra_units_and_plain_paths(name, files):
    with pytest.raises(UnitValueError):
        ManagedUnit(name, files)


def test_every_service_step_is_a_managed_unit_with_its_unit_file_among_its_files():
    p = _plan()
    units = {"engine": steps_engine.engine_unit(p), "spot": steps_spot.watcher_unit(p),
             "idle": idle_watch.watch_unit(p.idle_watch)}
    assert {k: u.name for k, u in units.items()} == {
        "engine": eng.UNIT_NAME, "spot": steps_spot.UNIT_NAME, "idle": idle_watch.TIMER}
    assert eng.UNIT_PATH in units["engine"].files and steps_spot.UNIT_PATH in units["spot"].files
    assert {idle_watch.SERVICE_PATH, idle_watch.TIMER_PATH} <= set(units["idle"].files)
    assert units["idle"].start == "now" and units["engine"].start == "restart"


STEP_MODULES = ("bootstrap/steps_engine.py", "bootstrap/steps_spot.py", "bootstrap/idle_watch.py")


@pytest.mark.parametrize("path", STEP_MODULES)
def test_service_steps_use_the_helper_not_their_own_systemctl_or_fact_keys(path):
    """The unit's state is ``p.units.<unit>`` (typed), and enabling/starting is the helper's:
    no step writes a ``*_stale`` fact or runs ``systemctl enable`` itself."""
    source = (ROOT / path).read_text()
    assert "systemctl enable" not in source and "daemon-reload" not in source
    strings = [n.value for n in ast.walk(ast.parse(source))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert [s for s in strings if s.endswith(("_stale", "_restarted"))] == []
