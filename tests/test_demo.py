"""`hub demo` runs offline on a fresh home and leaves a populated registry."""

from __future__ import annotations

import sqlite3


def test_demo_runs_and_registers_four_kinds(hub, tmp_path):
    result = hub("demo", "--into", tmp_path / "demo")
    assert "$ hub scan" in result.out and "$ hub search pixel" in result.out
    con = sqlite3.connect(tmp_path / "demo" / "home" / "registry.db")
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM artifact")}
    assert {"checkpoint", "lora", "embedding", "vae"} <= kinds
    tags = {t for (t,) in con.execute("SELECT name FROM tag")}
    assert {"style", "pixel", "painterly"} <= tags
