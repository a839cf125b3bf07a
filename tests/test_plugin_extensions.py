"""Extension points a third party fills: a converter to a new format (GGUF, which no probe
reads) and a merge method with its own option, from tests/plugin_pkg/hub_ext. In process they
are registered on the plugin manager; through the command line they load from the ``hub``
entry-point group of an installed distribution (a dist-info folder on PYTHONPATH)."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import struct
import sys
from pathlib import Path

import minimodels as tm
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file

from hub import plugins
from hub.convert import convert
from hub.importing import import_path
from hub.register import Overrides

PLUGIN_PKG = Path(__file__).parent / "plugin_pkg"


def _plugin(module: str):
    if str(PLUGIN_PKG) not in sys.path:
        sys.path.insert(0, str(PLUGIN_PKG))
    return importlib.import_module(f"hub_ext.{module}")


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
        count = math.prod(dims)
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=start + offset)
        tensors[name] = flat.reshape(tuple(reversed(dims)))
    return version, meta, tensors, [start + i[3] for i in infos]


def test_a_plugin_converter_adds_a_target_whose_output_keeps_kind_and_base(ctx, models):
    plugins.add_plugin(_plugin("converters"), name="ext_converters")
    imported = import_path(ctx, models["mini-sd1"], Overrides(name="base"))
    result = convert(ctx, "base", to="GGUF")
    art = result.artifact
    assert result.steps == ["safetensors-to-gguf"]
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
    from hub.registry.queries import resolve_json

    with ctx.db.reader() as reader:
        shown = resolve_json(reader, "checkpoint:base-GGUF")
    assert shown["id"] == art["id"]
    parent = imported.artifact["hashes"]["sha256"]
    assert [p["parent_sha256"] for p in _lineage(ctx, art["id"])] == [parent]


def _lineage(ctx, artifact_id: int) -> list[dict]:
    with ctx.db.reader() as reader:
        return reader.rows(
            "SELECT parent_sha256, relation FROM lineage WHERE child_id = :id", {"id": artifact_id}
        )


def test_unknown_target_lists_the_declared_ones(ctx, models):
    from hub.core.errors import HubError

    import_path(ctx, models["mini-sd1"], Overrides(name="base"))
    with pytest.raises(HubError) as err:
        convert(ctx, "base", to="gguf")  # the plugin is not registered here
    assert "unknown target format 'gguf'" in err.value.message
    assert "diffusers" in err.value.hint and "kohya" in err.value.hint


@pytest.fixture
def installed(hub, tmp_path):
    """hub_ext installed as a distribution: a dist-info with the ``hub`` entry points."""
    site = tmp_path / "site"
    dist = site / "hub_ext-0.3.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hub-ext\nVersion: 0.3.0\n")
    (dist / "entry_points.txt").write_text(
        "[hub]\next_converters = hub_ext.converters\next_merging = hub_ext.merging\n"
    )
    paths = [str(site), str(PLUGIN_PKG), hub.env.get("PYTHONPATH", "")]
    hub.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return hub


def test_help_lists_plugin_targets_methods_and_options(installed):
    assert "gguf" in installed("convert", "--help").out
    help_text = " ".join(installed("merge", "--help").out.split())
    assert "clamp (2 checkpoints): limit=1.0 (float)" in help_text
    assert "dare (2 to 8 checkpoints): density=0.2 (float)" in help_text
    rows = {r["name"]: r for r in installed("plugins", "--json").json()}
    assert "converters:safetensors-to-gguf" in rows["ext_converters"]["provides"]
    assert "merge_methods:clamp" in rows["ext_merging"]["provides"]


def _checkpoints(hub, n: int) -> list[dict[str, torch.Tensor]]:
    paths = [tm.mini_checkpoint("sd1", dtype=torch.float32, seed=s) for s in range(n)]
    for i, p in enumerate(paths):
        hub("import", p, "--name", f"m{i}")
    return [load_file(p) for p in paths]


def test_plugin_merge_method_takes_its_option(installed):
    a, b = _checkpoints(installed, 2)
    args = ("merge", "m0", "--with", "m1", "--method", "clamp", "--alpha", "0.25")
    out = installed(*args, "--option", "limit=0.01", "--name", "c", "--json").json()
    got = load_file(out["path"])
    for k in a:
        want = ((1 - 0.25) * a[k] + 0.25 * b[k]).clamp(-0.01, 0.01)
        assert torch.equal(got[k], want), k
    bad = installed(*args, "--option", "lim=1", "--name", "x", ok=False)
    assert bad.code == 64 and "merge method clamp has no option 'lim'" in bad.err
    assert "limit=1.0 (float)" in bad.err and "Traceback" not in bad.err
    bad = installed(*args, "--option", "limit=lots", "--name", "x", ok=False)
    assert bad.code == 64 and "option limit takes a number, not 'lots'" in bad.err
    bad = installed(*args, "--density", "0.3", "--name", "x", ok=False)
    assert bad.code == 64 and "clamp has no option 'density'" in bad.err
    assert len(installed("list", "--json").json()) == 3


def test_option_equals_its_shorthand_for_builtin_methods(hub):
    _checkpoints(hub, 2)
    base = ("merge", "m0", "--with", "m1", "--method", "dare")
    one = hub(*base, "--seed", "3", "--density", "0.5", "--name", "s", "--json").json()
    two = hub(*base, "--option", "seed=3", "--option", "density=0.5", "--name", "s", "--json")
    assert one["status"] == "added" and two.json()["status"] == "exists"  # the same bytes
    assert two.json()["id"] == one["id"]
    recipe = json.loads(load_metadata(one["path"])["sd_merge_recipe"])
    assert (recipe["method"], recipe["seed"], recipe["density"]) == ("dare", 3, 0.5)
    bad = hub("merge", "m0", "--with", "m1", "--density", "0.3", "--name", "w", ok=False)
    assert bad.code == 64 and "weighted-sum has no option 'density'" in bad.err
    assert "weighted-sum takes no options" in bad.err


def load_metadata(path: str) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, "np") as fh:
        return fh.metadata()


def test_merge_options_are_validated_against_the_declared_ones(ctx):
    from hub.core.errors import UsageError
    from hub.merge import merge_method, merge_methods

    plugins.add_plugin(_plugin("merging"), name="ext_merging")
    assert {"weighted-sum", "add-difference", "ties", "dare", "clamp"} <= set(merge_methods(ctx))
    clamp = merge_method(ctx, "clamp")
    assert clamp.settings({}) == {"limit": 1.0}
    assert clamp.settings({"limit": "0.5"}) == {"limit": 0.5}
    assert merge_method(ctx, "dare").settings({"seed": "7"}) == {"density": 0.2, "seed": 7}
    with pytest.raises(UsageError) as err:
        merge_method(ctx, "dare").settings({"seed": "1.5"})
    assert err.value.message == "merge method dare: option seed takes an integer, not '1.5'"
    assert err.value.hint == "dare options: density=0.2 (float), seed=0 (int)"
    with pytest.raises(UsageError) as err:
        merge_method(ctx, "nope")
    assert "clamp" in err.value.hint
