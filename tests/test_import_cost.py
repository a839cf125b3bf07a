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
    ],
)
def test_light_commands_import_no_torch(hub, args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=hub.cwd,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    heavy = json.loads(proc.stdout.rsplit("HEAVY=", 1)[1])
    assert heavy == [], f"hub {' '.join(args)} imported {heavy}"


def test_import_of_a_safetensors_file_imports_no_torch(hub, models):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["import", str(models["kohya-sd1"])])],
        cwd=hub.cwd,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(proc.stdout.rsplit("HEAVY=", 1)[1]) == []
