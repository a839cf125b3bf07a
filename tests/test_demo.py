"""`hub demo` runs offline on a fresh home: it serves a catalog, installs from it, merges and
generates, leaving a populated registry and images that say how they were made."""

from __future__ import annotations

import sqlite3

from PIL import Image

from hub.core import infotext


def test_demo_serves_installs_merges_and_generates(hub, tmp_path):
    result = hub("demo", "--into", tmp_path / "demo", "--json")
    for line in (
        "$ hub install lora:pixel-art -y",
        "$ hub search '' --tag style",
        "serve --port 0",
    ):
        assert line in result.err  # with --json the transcript goes to stderr
    report = result.json()  # and stdout holds only the JSON report
    root = (tmp_path / "demo").resolve()
    assert report["root"] == str(root) and report["registry"] == str(root / "home/registry.db")
    assert report["images"] == [str(p) for p in sorted((root / "outputs").glob("*.png"))]
    assert report["server"].startswith("http://127.0.0.1:")
    commands = [c["command"] for c in report["commands"]]
    assert "hub install lora:pixel-art -y" in commands and commands[-1] == "hub verify"
    assert all(c["seconds"] > 0 for c in report["commands"])
    assert report["seconds"] >= sum(c["seconds"] for c in report["commands"])
    con = sqlite3.connect(tmp_path / "demo" / "home" / "registry.db")
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM artifact")}
    assert {"checkpoint", "lora", "embedding", "hypernetwork"} <= kinds
    sources = {s for (s,) in con.execute("SELECT source FROM artifact WHERE kind = 'lora'")}
    assert sources == {"civitai"}  # installed from the demo's own `hub serve`
    tags = {t for (t,) in con.execute("SELECT name FROM tag")}
    assert {"style", "pixel", "painterly"} <= tags
    images = sorted((tmp_path / "demo" / "outputs").glob("*.png"))
    assert images
    with Image.open(tmp_path / "demo" / "outputs" / "castle.png") as img:
        info = infotext.parse_infotext(img.text["parameters"])
    assert info.params["Seed"] == "7" and info.negative == "bad-hands, blurry"
    assert set(infotext.hash_list(info.params["Lora hashes"])) == {"pixel-art", "soft-watercolor"}
    assert "<hypernet:anime-lines:0.6>" in info.prompt
    outputs = tmp_path / "demo" / "outputs"
    with Image.open(outputs / "castle-again.png") as a, Image.open(outputs / "castle.png") as b:
        assert a.tobytes() == b.tobytes()  # --from reproduced the pixels
