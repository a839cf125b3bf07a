"""`hub scan`: in-place registration of A1111/ComfyUI trees, sidecars, incremental rescans."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct

import pytest

pytestmark = pytest.mark.both_engines  # SQLite and a real PostgreSQL (tests/pg.py)


@pytest.fixture
def webui(tmp_path, models):
    """An A1111 tree and a ComfyUI tree with sidecars, links and a loop."""
    root = tmp_path / "webui"
    lora = root / "models" / "Lora"
    lora.mkdir(parents=True)
    (root / "embeddings").mkdir()
    (root / "models" / "Stable-diffusion").mkdir()
    (root / "models" / "VAE").mkdir()
    shutil.copyfile(models["kohya-sd1"], lora / "pixel.safetensors")
    shutil.copyfile(models["loha-sd1"], lora / "soft.safetensors")
    shutil.copyfile(models["emb-sd1"], root / "embeddings" / "badhands.safetensors")
    shutil.copyfile(models["vae"], root / "models" / "VAE" / "clear.safetensors")
    os.symlink(models["mini-sd1"], root / "models" / "Stable-diffusion" / "mini.safetensors")
    (lora / "pixel.civitai.info").write_text(
        json.dumps(
            {
                "id": 222,
                "modelId": 111,
                "name": "v2.0",
                "baseModel": "SD 1.5",
                "trainedWords": ["pixel art", "8bit"],
                "description": "<p>Pixels <script>alert(1)</script><b>everywhere</b></p>",
                "model": {"name": "Pixel Art", "type": "LORA", "nsfw": False},
            }
        )
    )
    (lora / "soft.json").write_text(
        json.dumps(
            {
                "description": "soft watercolor look",
                "sd version": "SD1",
                "activation text": "soft, watercolor",
                "preferred weight": 0.7,
                "notes": "",
            }
        )
    )
    (lora / "soft.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (lora / "notes.txt").write_text("not a model")
    comfy = tmp_path / "zcomfy" / "models" / "loras"  # walked after webui/
    comfy.mkdir(parents=True)
    os.link(lora / "soft.safetensors", comfy / "soft-hardlink.safetensors")  # same file
    os.symlink(lora, comfy / "linked-a1111-loras")  # a folder seen twice
    os.symlink(tmp_path / "zcomfy", comfy / "loop")  # a loop
    os.symlink(tmp_path / "gone.safetensors", comfy / "dangling.safetensors")
    return tmp_path


def test_scan_registers_in_place_with_sidecars(hub, webui, models):
    report = hub("scan", webui, "--json").json()
    assert len(report["added"]) == 5
    soft_link = webui / "zcomfy" / "models" / "loras" / "soft-hardlink.safetensors"
    assert [x["path"] for x in report["locations_added"]] == [str(soft_link)]
    skipped = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
    assert "dangling.safetensors" in skipped
    assert any("loop" in r for r in skipped.values())
    rows = {a["name"]: a for a in hub("list", "--json").json()}
    assert set(rows) == {"pixel", "soft", "badhands", "clear", "mini-sd1"}
    assert rows["mini-sd1"]["path"] == str(models["mini-sd1"])  # real path, no copy
    assert rows["soft"]["path"] == str(webui / "webui" / "models" / "Lora" / "soft.safetensors")
    assert not rows["soft"]["in_store"]
    assert not (hub.home / "models").exists() or not any(
        (hub.home / "models").rglob("*.safetensors")
    )
    pixel = rows["pixel"]
    assert pixel["trained_words"] == ["pixel art", "8bit"]
    assert pixel["family"] == "SD 1.5" and pixel["version"] == "v2.0"
    assert pixel["source"] == {
        "name": "civitai",
        "site": "civitai",
        "model_id": 111,
        "version_id": 222,
    }
    assert pixel["description"] == "Pixels everywhere"
    soft = rows["soft"]
    assert soft["trained_words"] == ["soft", "watercolor"]
    assert soft["preferred_weight"] == 0.7
    assert soft["preview"].endswith("soft.preview.png")
    assert {a["name"] for a in hub("search", "watercolor", "--json").json()} == {"soft"}
    assert {a["name"] for a in hub("search", "8bit", "--json").json()} == {"pixel"}


def test_rescan_of_unchanged_tree_hashes_nothing(hub, webui):
    hub("scan", webui)
    again = hub("scan", webui, "--json").json()
    assert again["hashed_bytes"] == 0
    assert again["added"] == again["updated"] == []
    assert again["unchanged"] == 6  # five files and the hard link (a second location)
    assert again["locations_added"] == [] and again["pending"] == 0


def test_changed_file_is_rehashed_and_row_updated(hub, webui, models):
    hub("scan", webui)
    target = webui / "webui" / "models" / "Lora" / "pixel.safetensors"
    shutil.copyfile(models["kohya-sdxl"], target)
    report = hub("scan", webui, "--json").json()
    assert report["updated"] == [str(target)]
    assert report["hashed_bytes"] == target.stat().st_size
    row = hub("show", "lora:pixel", "--json").json()
    assert row["hashes"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert row["base"] == "sdxl"
    assert len(hub("list", "--json").json()) == 5


def test_scan_reports_pickles_and_keeps_going(hub, tmp_path, models):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "old.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    shutil.copyfile(models["emb-sd2"], folder / "good.safetensors")
    result = hub("scan", folder)
    assert "old.ckpt" in result.err and "pickle" in result.err
    assert [a["name"] for a in hub("list", "--json").json()] == ["good"]


def test_scan_of_missing_folder_is_one_line(hub, tmp_path):
    result = hub("scan", tmp_path / "nowhere", ok=False)
    assert result.code != 0 and result.err.startswith("error: ") and "Traceback" not in result.err


def test_records_are_one_line_in_a_pipe_whatever_their_length(hub, tmp_path, models):
    """rich wraps at 80 columns when output is not a terminal: a long path must not be split."""
    folder = tmp_path / "long"
    folder.mkdir()
    stem = "p04-code-" + "x" * (200 - len(str(folder)) - len("/p04-code-.ckpt"))
    refused = folder / f"{stem}.ckpt"
    refused.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    good = folder / f"{stem}.safetensors"
    shutil.copyfile(models["emb-sd2"], good)
    assert len(str(refused)) == 200
    result = hub("scan", folder)
    [line] = [x for x in result.err.splitlines() if x.startswith("skipped")]
    assert line.startswith(f"skipped {refused}: ") and len(line) > len(str(refused)) + 10
    autov2 = hashlib.sha256(good.read_bytes()).hexdigest()[:10]
    rows = [x.split() for x in hub("list").out.splitlines()]
    assert rows[0] == ["name", "kind", "base", "family", "algo/layout", "size", "autov2", "tags"]
    assert rows[1][:5] == [stem, "embedding", "sd2", "unknown", "a1111"]
    assert rows[1][-1] == autov2
    assert len(rows) == 2


def test_autov3_in_the_pass_for_add_ons_and_on_demand_for_the_rest(hub, webui, models):
    """Add-ons get AutoV3 while they are hashed; a checkpoint or a VAE gets it (equal to
    hashlib over the bytes after the header) only when a ref asks for it by AutoV3."""

    def autov3(path):
        data = path.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        return hashlib.sha256(data[8 + n :]).hexdigest()

    hub("scan", webui / "webui")
    arts = {a["name"]: a for a in hub("list", "--json").json()}
    for name, fixture in (("pixel", "kohya-sd1"), ("badhands", "emb-sd1")):
        assert arts[name]["hashes"]["autov3"] == autov3(models[fixture])
    assert arts["mini-sd1"]["hashes"]["autov3"] is None
    assert arts["clear"]["hashes"]["autov3"] is None
    hub("show", arts["mini-sd1"]["hashes"]["sha256"][:12], "--json")  # no AutoV3 asked for
    assert hub("show", "mini-sd1", "--json").json()["hashes"]["autov3"] is None
    wanted = autov3(models["mini-sd1"])
    shown = hub("show", f"autov3:{wanted[:12]}", "--json").json()
    assert shown["name"] == "mini-sd1" and shown["hashes"]["autov3"] == wanted
    assert hub("show", "mini-sd1", "--json").json()["hashes"]["autov3"] == wanted
    assert hub("show", "clear", "--json").json()["hashes"]["autov3"] == autov3(models["vae"])
