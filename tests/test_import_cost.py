"""Commands that do not touch weights must not import torch, diffusers or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers")
PROBE = f"""
import json, sys
sys.argv = ["hub", *json.loads(sys.argv[1])]
from hub.cli import main
try:
    main()
except SystemExit:
    pass
sys.__stdout__.write("\\nHEAVY=" + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""


def run_probe(hub, args: list[str]) -> tuple[str, list[str]]:
    """Run ``hub ARGS`` in a fresh interpreter: its stdout and the heavy modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=hub.cwd,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    body, heavy = proc.stdout.rsplit("HEAVY=", 1)
    return body, json.loads(heavy)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["list"],
        ["list", "--json"],
        ["search", "pixel"],
        ["show", "nothing"],
        ["plugins"],
        ["import", "--help"],
        ["convert", "--help"],  # lists the converters' targets: plugins load, torch does not
        ["merge", "--help"],
    ],
)
def test_light_commands_import_no_torch(hub, args):
    heavy = run_probe(hub, args)[1]
    assert heavy == [], f"hub {' '.join(args)} imported {heavy}"


def test_import_of_a_safetensors_file_imports_no_torch(hub, models):
    assert run_probe(hub, ["import", str(models["kohya-sd1"])])[1] == []


def test_import_of_hub_generate_imports_no_torch():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import hub.generate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "hub.generate" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_generate_dry_run_imports_no_torch(hub, models):
    hub("import", models["mini-sd1"], "--name", "m")
    args = ["generate", "a castle", "--model", "m", "--steps", "3", "--dry-run", "--json"]
    body, heavy = run_probe(hub, args)
    assert json.loads(body)[0]["model"]["name"] == "m"
    assert heavy == []


def test_each_command_imports_only_its_own_module(hub):
    """``COMMAND_MODULES`` names every built-in command's module (each module registers
    exactly its commands), and ``hub search`` imports no other command module."""
    import importlib

    import typer

    from hub.cli import COMMAND_MODULES

    for module in set(COMMAND_MODULES.values()):
        app = typer.Typer()
        importlib.import_module(f"hub.cli.{module}").register(app)
        names = {c.name or c.callback.__name__ for c in app.registered_commands}
        names |= {g.name for g in app.registered_groups}
        assert names == {c for c, m in COMMAND_MODULES.items() if m == module}, module
    probe = PROBE.replace("HEAVY=", "CLI=").replace(
        repr(HEAVY), repr(tuple(f"hub.cli.{m}" for m in set(COMMAND_MODULES.values())))
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(["search", "pixel"])],
        cwd=hub.cwd,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(proc.stdout.rsplit("CLI=", 1)[1]) == ["hub.cli.library_cmd"]
