"""``hub lock`` then ``hub sync`` on fresh homes, against the loopback share site and a team's
``hub serve``: the same files by SHA-256, a second sync changes nothing, a killed sync
completes when re-run, and a source that now serves other bytes is refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from conftest import HubRunner
from fake_sites import Hosted

from hub.serve import background


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _held(runner: HubRunner) -> set[str]:
    """SHA-256 of every registered file, computed from the bytes on disk."""
    return {_sha(Path(a["path"]).read_bytes()) for a in runner("list", "--json").json()}


def _fresh(tmp_path: Path, name: str, template: HubRunner) -> HubRunner:
    runner = HubRunner(tmp_path / name, template.cwd)
    runner.env = {**template.env, "HUB_HOME": str(tmp_path / name)}
    return runner


def test_lock_then_sync_on_fresh_homes(hub, site, models, tmp_path):
    pixel = site.add(
        Hosted(101, 1001, 5001, models["kohya-sd1"].read_bytes(), "pixel.safetensors", "Pixel")
    )
    pixel.throttle = 0.05  # slow enough to kill a sync mid-file
    hub("install", "civitai:101@1001", "-y")
    hub("import", models["emb-sd1"], "--name", "shiny")  # local: only the team has it
    hub("import", models["loha-sd1"], "--name", "unlocked")  # in no stack
    env = {k: v for k, v in hub.env.items()}
    with background(env, hub.cwd) as team_url:
        config = hub.cwd / "hub.toml"
        config.write_text(
            f'[sources.team]\ntype = "civitai"\nurl = "{team_url}"\n\n'
            '[stacks.castle]\nloras = ["lora:pixel:0.8"]\nembeddings = ["shiny"]\n'
        )
        hub.env["HUB_CONFIG"] = str(config)
        made = hub("lock", "--json").json()
        lock_path = hub.cwd / "hub.lock"
        assert made["path"] == str(lock_path) and made["files"] == 2
        first = lock_path.read_bytes()
        hub("lock")
        assert lock_path.read_bytes() == first  # stable
        lock = json.loads(first)
        want = {_sha(pixel.data), _sha(models["emb-sd1"].read_bytes())}
        assert {f["sha256"] for f in lock["files"]} == want
        assert lock["stacks"] == {"castle": sorted(want)}
        [locked_pixel] = [f for f in lock["files"] if f["kind"] == "lora"]
        assert (locked_pixel["base"], locked_pixel["size"]) == ("sd1", len(pixel.data))
        refs = [s["ref"] for s in locked_pixel["sources"]]
        assert "civitai:101@1001" in refs and f"team:sha256:{_sha(pixel.data)}" in refs

        b = _fresh(tmp_path, "home-b", hub)
        report = b("sync", "--json").json()
        assert sorted(report["installed"]) == sorted(want) and not report["failed"]
        assert _held(b) == want
        again = b("sync", "--json").json()
        assert again["installed"] == [] and sorted(again["ok"]) == sorted(want)

        c = _fresh(tmp_path, "home-c", hub)
        proc = c.popen("sync")
        c.kill_when_partial(proc)
        assert proc.returncode != 0
        missing = want - _held(c)
        assert missing and sorted(c("sync", "--json").json()["installed"]) == sorted(missing)
        assert _held(c) == want

    pixel.data = models["locon-sd1"].read_bytes()  # the site now serves other bytes
    pixel.etag = '"changed"'
    d = _fresh(tmp_path, "home-d", hub)
    result = d("sync", "--json", ok=False)
    assert result.code == 1
    report = result.json()
    assert [r["sha256"] for r in report["refused"]] == [_sha(models["kohya-sd1"].read_bytes())]
    assert _sha(pixel.data) not in _held(d) and _sha(models["kohya-sd1"].read_bytes()) not in (
        _held(d)
    )
    assert not [p for p in (d.home / "models").rglob("*.safetensors") if "Lora" in p.parts]
    assert os.path.exists(lock_path)


def test_generate_uses_the_locked_versions(hub, models):
    hub("import", models["mini-sd1"], "--name", "base")
    hub("import", models["kohya-sd1"], "--name", "pixel")
    config = hub.cwd / "hub.toml"
    config.write_text(
        '[stacks.castle]\nmodel = "base"\nloras = ["lora:pixel:0.8"]\n'
        "steps = 1\nwidth = 64\nheight = 64\n"
    )
    hub.env["HUB_CONFIG"] = str(config)
    hub("lock")
    locked = _sha(models["kohya-sd1"].read_bytes())
    plan = hub("generate", "a castle", "--stack", "castle", "--dry-run")
    assert "hub.lock" not in plan.err  # the registry agrees with the lock

    hub("import", models["locon-sd1"], "--name", "pixel")  # a newer pixel: the name is two files
    plan = hub("generate", "a castle", "--stack", "castle", "--dry-run", "--json").json()[0]
    assert [(lo["sha256"], lo["te"], lo["unet"]) for lo in plan["loras"]] == [(locked, 0.8, 0.8)]
    said = hub("generate", "a castle", "--stack", "castle", "--dry-run").err
    assert f"generating with the locked {locked[:10]}" in said and "stack castle" in said
    made = hub("generate", "a castle", "--stack", "castle", "-o", hub.cwd / "c.png", "--json")
    assert "generating with the locked" in made.err
    assert [lo["sha256"] for lo in made.json()[0]["record"]["loras"]] == [locked]

    hub("rm", f"sha256:{locked}", "-y")  # the locked file is gone from this machine
    failed = hub("generate", "a castle", "--stack", "castle", "--dry-run", ok=False)
    assert failed.code != 0 and "Traceback" not in failed.err
    assert "locked lora pixel" in failed.err and "hub sync" in failed.err
