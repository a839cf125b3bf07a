"""A real third-party plugin package (tests/plugin_pkg: its own pyproject.toml, one
``[project.entry-points.hub]`` entry per extension module), pip-installed into a folder of
its own (never into the venv, so no other test sees it) and used by ``hub`` in a subprocess
with that folder on PYTHONPATH: a share site with search and install from its own loopback
server, a converter to a format sd-hub does not know (GGUF), a merge method with an option of
its own, a probe, an image reader, a UI layout, an inference backend that answers first, and
a hook wrapper that records every hook call. Each shows in ``hub plugins``, is used through
the normal commands, and ``[plugins] disabled`` turns each off."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import minimodels as tm
import numpy as np
import pytest
from fake_sites import Hosted

from hub.core.errors import ExitCode

PACKAGE = Path(__file__).parent / "plugin_pkg"
EXTENSIONS = (
    "ext_sources",
    "ext_converters",
    "ext_merging",
    "ext_probes",
    "ext_readers",
    "ext_uis",
    "ext_backend",
    "ext_wrapper",
)


@pytest.fixture(scope="module")
def ext_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package pip-installed (``--target``) into a folder of its own."""
    work = tmp_path_factory.mktemp("hub_ext")
    source = shutil.copytree(PACKAGE, work / "src")  # the build writes beside the sources
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--disable-pip-version-check", "--target", str(target)]
        + [str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "hub_ext" / "sources.py").is_file()
    return target


class ExtSite:
    """The plugin's share site on 127.0.0.1: ``/search?q=``, ``/items/ID``, ``/files/NAME``."""

    def __init__(self, items: dict[str, tuple[str, bytes]]) -> None:  # id -> (name, bytes)
        self.items = items
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def item(self, item_id: str) -> dict[str, object]:
        name, data = self.items[item_id]
        return {
            "id": item_id,
            "name": name,
            "file": f"{item_id}.safetensors",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "kind": "lora",
            "tags": ["ext"],
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                site.requests.append(self.path)
                path, _, query = self.path.partition("?")
                if path == "/search":
                    words = query.removeprefix("q=").lower()
                    found = [site.item(i) for i, (n, _) in site.items.items() if words in n.lower()]
                    return self._send(json.dumps(found).encode(), "application/json")
                if path.startswith("/items/") and path[7:] in site.items:
                    return self._send(json.dumps(site.item(path[7:])).encode(), "application/json")
                if (
                    path.startswith("/files/")
                    and path[7:].removesuffix(".safetensors") in site.items
                ):
                    data = site.items[path[7:].removesuffix(".safetensors")][1]
                    return self._send(data, "application/octet-stream")
                self.send_error(404)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ext(hub, ext_path, models, tmp_path):
    """``hub`` with the package on its path, the plugin's site up, and a hub.toml naming it;
    ``ext.disable(name)`` rewrites hub.toml's ``[plugins] disabled``."""
    site = ExtSite({"pixel": ("Ext Pixel", models["kohya-sd1"].read_bytes())})
    config = tmp_path / "hub.toml"
    log = tmp_path / "ext.jsonl"

    def disable(*names: str) -> None:
        config.write_text(
            f'[hub_ext]\nurl = "{site.origin}"\n\n[plugins]\ndisabled = {json.dumps(names)}\n'
        )

    def events(kind: str) -> list[dict[str, object]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == kind]

    disable()
    path = os.pathsep.join(p for p in (str(ext_path), hub.env.get("PYTHONPATH")) if p)
    hub.env |= {"PYTHONPATH": path, "HUB_CONFIG": str(config), "HUB_EXT_LOG": str(log)}
    hub.site, hub.disable, hub.events, hub.log = site, disable, events, log
    yield hub
    site.close()


def _hookspec_names() -> list[str]:
    from hub.plugins import hookspecs

    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "hub_spec"))


def test_hub_plugins_shows_each_extension(ext):
    rows = {r["name"]: r for r in ext("plugins", "--json").json()}
    assert all(
        (rows[n]["package"], rows[n]["version"], rows[n]["builtin"]) == ("hub-ext", "0.3.0", False)
        for n in EXTENSIONS
    )
    assert rows["ext_sources"]["provides"] == ["sources:extsite"]
    assert rows["ext_probes"]["provides"] == ["probes:ext_marker"]
    assert rows["ext_readers"]["provides"] == ["image_readers:exttool"]
    assert rows["ext_converters"]["provides"] == ["converters:safetensors-to-gguf"]
    assert rows["ext_merging"]["provides"] == ["merge_methods:clamp"]
    assert rows["ext_uis"]["provides"] == ["ui_layouts:exttool"]
    assert rows["ext_backend"]["hooks"] == ["load_pipeline"]
    assert rows["ext_wrapper"]["hooks"] == _hookspec_names()
    table = ext("plugins").out
    assert "sources:extsite" in table and "hub-ext" in table


def test_source_searches_and_installs_from_its_own_server(ext, site, models):
    site.add(Hosted(7, 70, 700, models["emb-sd1"].read_bytes(), "p.safetensors", "Pixel Civ"))
    mine = ext("search", "pixel", "--remote", "--source", "extsite", "--json").json()
    assert [(i["source"], i["ref"], i["name"]) for i in mine["items"]] == [
        ("extsite", "extsite:pixel", "Ext Pixel")
    ]
    every = ext("search", "pixel", "--remote", "--json").json()  # every source that can
    assert {(i["source"], i["ref"]) for i in every["items"]} == {
        ("extsite", "extsite:pixel"),
        ("civitai", "civitai:7"),
    }
    art = ext("install", "extsite:pixel", "--json").json()["artifact"]
    data = models["kohya-sd1"].read_bytes()
    assert art["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (art["kind"], art["base"], art["source"]["site"]) == ("lora", "sd1", "extsite")
    assert "/files/pixel.safetensors" in ext.site.requests
    ext.disable("ext_sources")
    gone = ext("install", "extsite:pixel", "--dry-run", ok=False)
    assert gone.code == ExitCode.NOT_FOUND and "no source handles 'extsite:pixel'" in gone.err


def test_probe_identifies_its_files(ext, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "marked.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"ext_format": "marker"})
    shown = ext("show", path, "--why", "--json").json()
    assert (shown["kind"], shown["base"]) == ("vae", "sdxl")
    assert any(v["probe"] == "ext_marker" and v["matched"] for v in shown["why"])
    ext.disable("ext_probes")
    without = ext("show", path, "--why", "--json", ok=False).json()
    assert "ext_marker" not in {v["probe"] for v in without.get("why", [])}


def test_image_reader_reads_its_tool(ext, tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("exttool", json.dumps({"prompt": "a red fox", "steps": 12, "seed": 5}))
    image = tmp_path / "fox.png"
    Image.new("RGB", (8, 8)).save(image, pnginfo=info)
    [found] = ext("inspect", image, "--json").json()
    record = found["record"]
    assert (record["tool"], record["prompt"], record["steps"], record["seed"]) == (
        "ExtTool",
        "a red fox",
        12,
        5,
    )
    ext.disable("ext_readers")
    [plain] = ext("inspect", image, "--json", ok=False).json()
    assert (plain.get("record") or {}).get("tool") != "ExtTool"


def test_backend_answers_first_and_the_wrapper_sees_every_hook_call(ext, models, tmp_path):
    ext("import", models["mini-sd1"], "--name", "mini")
    rows = ext("plugins", "--json").json()
    ext.log.unlink(missing_ok=True)
    args = ["generate", "a fox", "--model", "mini", "--steps", "1", "--seed", "3"]
    ext(*args, "-W", "64", "-H", "64", "-o", tmp_path / "one.png")
    assert (tmp_path / "one.png").is_file()
    assert [e["model"] for e in ext.events("backend")] == ["mini"]
    # the wrapper saw each registration hook once per plugin that provides through it (they
    # are collected once, per plugin), and the one load_pipeline call, which was answered
    seen = Counter(e["name"] for e in ext.events("hook"))
    providers = Counter(
        hook
        for r in rows
        if r["name"] != "ext_wrapper"
        for hook in r["hooks"]
        if hook.startswith("register_") and hook != "register_commands"
    )
    assert seen == providers + Counter({"load_pipeline": 1})
    assert [e["answered"] for e in ext.events("hook") if e["name"] == "load_pipeline"] == [True]

    ext.disable("ext_backend", "ext_wrapper")
    ext.log.unlink()
    ext(*args, "-W", "64", "-H", "64", "-o", tmp_path / "two.png")
    assert (tmp_path / "two.png").is_file() and not ext.log.exists()  # built-in answered


def test_plugin_commands_go_through_the_hook_caller(ext):
    ext.log.unlink(missing_ok=True)
    result = ext("no-such-command", ok=False)
    assert result.code == ExitCode.USAGE
    assert "register_commands" in {e["name"] for e in ext.events("hook")}


def test_every_module_of_the_package_is_an_entry_point_here():
    import tomllib

    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    points = project["entry-points"]["hub"]
    assert sorted(points) == sorted(EXTENSIONS)
    modules = {p.stem for p in (PACKAGE / "hub_ext").glob("*.py")} - {"__init__"}
    assert {v.removeprefix("hub_ext.") for v in points.values()} == modules


def read_gguf(path: Path) -> tuple[int, dict, dict[str, np.ndarray], list[int]]:
    """A GGUF v3 file read by the spec (version, metadata, tensors, data offsets); only the
    value types the test writer uses (uint32, string) and F32/F16 tensors."""
    data = path.read_bytes()
    assert data[:4] == b"GGUF"
    pos = 4

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("<Q")
        pos += n
        return data[pos - n : pos].decode()

    version, n_tensors, n_kv = take("<IQQ")
    meta = {}
    for _ in range(n_kv):
        key = string()
        (vtype,) = take("<I")
        meta[key] = string() if vtype == 8 else take("<I")[0]
    infos = []
    for _ in range(n_tensors):
        name = string()
        (ndim,) = take("<I")
        dims = take(f"<{ndim}Q")
        ggml_type, offset = take("<IQ")
        infos.append((name, dims, ggml_type, offset))
    align = meta.get("general.alignment", 32)
    start = pos + (-pos % align)
    tensors = {}
    for name, dims, ggml_type, offset in infos:
        dtype = {0: np.dtype("<f4"), 1: np.dtype("<f2")}[ggml_type]
        flat = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=start + offset)
        tensors[name] = flat.reshape(tuple(reversed(dims)))
    return version, meta, tensors, [start + i[3] for i in infos]


def test_converter_adds_gguf_whose_output_keeps_kind_and_base(ext, models):
    from safetensors.numpy import load_file as load_numpy

    assert "gguf" in ext("convert", "--help").out
    parent = ext("import", models["mini-sd1"], "--name", "base", "--json").json()[0]
    art = ext("convert", "base", "--to", "GGUF", "--json").json()
    assert art["steps"] == ["safetensors-to-gguf"]
    assert (art["format"], art["kind"], art["base"]) == ("gguf", "checkpoint", "sd1")
    path = Path(art["path"])
    assert path.suffix == ".gguf" and path.name == "base-GGUF.gguf"
    # hashed after writing (the converter does not feed the hasher): the real bytes' hash
    assert art["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    version, meta, tensors, offsets = read_gguf(path)
    assert version == 3 and meta["general.alignment"] == 32
    assert all(o % 32 == 0 for o in offsets)
    want = load_numpy(models["mini-sd1"])
    assert set(tensors) == set(want)
    for key, value in want.items():
        assert tensors[key].dtype == value.dtype, key
        assert np.array_equal(tensors[key].reshape(value.shape), value), key
    shown = ext("show", "checkpoint:base-GGUF", "--json").json()
    assert shown["id"] == art["id"]
    assert [p["parent_sha256"] for p in shown["lineage"]] == [parent["hashes"]["sha256"]]

    ext.disable("ext_converters")
    assert "gguf" not in ext("convert", "--help").out
    gone = ext("convert", "base", "--to", "gguf", "--name", "again", ok=False)
    assert "unknown target format 'gguf'" in gone.err and "Traceback" not in gone.err


def test_merge_method_takes_its_option(ext):
    import torch
    from safetensors.torch import load_file

    help_text = " ".join(ext("merge", "--help").out.split())
    assert "clamp (2 checkpoints): limit=1.0 (float)" in help_text
    paths = [tm.mini_checkpoint("sd1", dtype=torch.float32, seed=s) for s in range(2)]
    for i, p in enumerate(paths):
        ext("import", p, "--name", f"m{i}")
    a, b = (load_file(p) for p in paths)
    args = ("merge", "m0", "--with", "m1", "--method", "clamp", "--alpha", "0.25")
    out = ext(*args, "--option", "limit=0.01", "--name", "c", "--json").json()
    got = load_file(out["path"])
    for k in a:
        want = ((1 - 0.25) * a[k] + 0.25 * b[k]).clamp(-0.01, 0.01)
        assert got[k].equal(want), k
    bad = ext(*args, "--option", "lim=1", "--name", "x", ok=False)
    assert bad.code == 64 and "merge method clamp has no option 'lim'" in bad.err
    assert "limit=1.0 (float)" in bad.err and "Traceback" not in bad.err
    bad = ext(*args, "--option", "limit=lots", "--name", "x", ok=False)
    assert bad.code == 64 and "option limit takes a number, not 'lots'" in bad.err
    bad = ext(*args, "--density", "0.3", "--name", "x", ok=False)
    assert bad.code == 64 and "clamp has no option 'density'" in bad.err
    assert len(ext("list", "--json").json()) == 3

    ext.disable("ext_merging")
    assert "clamp" not in ext("merge", "--help").out
    gone = ext(*args, "--option", "limit=0.01", "--name", "d", ok=False)
    assert gone.code == 64 and "unknown merge method 'clamp'" in gone.err
    assert "Traceback" not in gone.err
    assert len(ext("list", "--json").json()) == 3


def test_ui_layout_detects_its_installs_and_links_into_its_folders(ext, models, tmp_path):
    lora = ext("import", models["kohya-sd1"], "--json").json()[0]
    ckpt = ext("import", models["mini-sd1"], "--json").json()[0]
    root = tmp_path / "tool"
    (root / "exttool.toml").parent.mkdir(parents=True)
    (root / "exttool.toml").write_text("")
    ui = ext("ui", "add", root, "--json").json()  # detected from its marker
    assert (ui["type"], ui["name"]) == ("exttool", "tool")
    actions = ext("ui", "link", "tool", "--json").json()["actions"]
    linked = [a for a in actions if a["status"] == "linked"]
    assert [Path(a["path"]) for a in linked] == [root / "adapters" / Path(lora["path"]).name]
    assert os.path.samefile(root / "adapters" / Path(lora["path"]).name, lora["path"])
    reasons = {a["reason"] for a in actions if a["artifact"] == f"checkpoint:{ckpt['name']}"}
    assert reasons == {f"ExtTool does not list files named like {Path(ckpt['path']).name}"}
    assert not (root / "weights").exists()

    ext.disable("ext_uis")
    gone = ext("ui", "link", "tool", ok=False)
    assert "of type 'exttool', which no loaded plugin provides" in gone.err
    other = tmp_path / "other"
    (other / "exttool.toml").parent.mkdir(parents=True)
    (other / "exttool.toml").write_text("")
    unknown = ext("ui", "add", other, ok=False)
    assert "not recognised as a web UI install" in unknown.err and "exttool" not in unknown.err
