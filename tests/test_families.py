"""Families with evidence and fit (issue 15): real mini models whose safetensors metadata is
rewritten as kohya and ModelSpec write it, Civitai sidecars, a real Civitai answer served by
the loopback site, and the real ``hub`` command."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
from conftest import HubRunner
from fake_sites import TOKEN, FakeSite, Hosted

REAL = Path(__file__).parent / "realdata" / "civitai"
ILLUSTRIOUS_MODEL, ILLUSTRIOUS_FILE = 1580878, 1865079


def with_metadata(src: Path, dst: Path, metadata: dict[str, str]) -> Path:
    """``src`` with its safetensors ``__metadata__`` updated, tensor bytes unchanged."""
    with src.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header["__metadata__"] = {**(header.get("__metadata__") or {}), **metadata}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with dst.open("wb") as out:
            out.write(struct.pack("<Q", len(raw)) + raw)
            while chunk := f.read(1 << 20):
                out.write(chunk)
    return dst


def autov1(path: Path) -> str:
    """A1111's legacy hash (what kohya writes as ``ss_sd_model_hash``), by hand."""
    with path.open("rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def civitai_info(model: Path, base_model: str, version_id: int) -> None:
    """A Civitai Helper sidecar: the version object as by-hash returns it."""
    info = {"id": version_id, "modelId": version_id * 10, "name": "v1", "baseModel": base_model}
    model.with_name(f"{model.stem}.civitai.info").write_text(json.dumps(info))


@pytest.fixture(scope="module")
def library(tmp_path_factory, models) -> Path:
    """Three SDXL checkpoints (SDXL 1.0 by ModelSpec, Pony and Illustrious by sidecar) and
    add-ons whose family comes from each kind of evidence."""
    lib = tmp_path_factory.mktemp("lib")
    xl = with_metadata(
        models["mini-sdxl"],
        lib / "ckpt-xl.safetensors",
        {"modelspec.architecture": "stable-diffusion-xl-v1-base"},
    )
    pony = with_metadata(models["mini-sdxl"], lib / "ckpt-pony.safetensors", {"note": "pony"})
    civitai_info(pony, "Pony", 901)
    ill = with_metadata(models["mini-sdxl"], lib / "ckpt-ill.safetensors", {"note": "ill"})
    civitai_info(ill, "Illustrious", 902)
    kohya = {"ss_base_model_version": "sdxl_base_v1-0"}
    with_metadata(models["kohya-sdxl"], lib / "lora-xl.safetensors", kohya)
    # trained on the Pony checkpoint: kohya still writes sdxl_base_v1-0, the hash says Pony
    with_metadata(
        models["kohya-sdxl"],
        lib / "lora-pony.safetensors",
        {**kohya, "ss_sd_model_hash": autov1(pony), "ss_sd_model_name": "whatever.safetensors"},
    )
    noob = with_metadata(models["peft-sdxl"], lib / "lora-noob.safetensors", {"x": "1"})
    civitai_info(noob, "NoobAI", 903)
    with_metadata(models["emb-sdxl"], lib / "emb-xl.safetensors", {"x": "1"})
    with_metadata(
        models["kohya-sd1"], lib / "lora-sd1.safetensors", {"ss_base_model_version": "sd_v1"}
    )
    assert xl.read_bytes()[-4096:] == models["mini-sdxl"].read_bytes()[-4096:]
    return lib


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, library: Path, models):
    """The library scanned, plus an Illustrious LoRA installed from a real Civitai answer
    (one home for the module: tests that change a family set it back)."""
    root = tmp_path_factory.mktemp("home")
    (root / "work").mkdir()
    hub = HubRunner(root / "home", root / "work")
    site = FakeSite(token=TOKEN)
    hub.env["HUB_CIVITAI_URL"] = site.origin
    hub("scan", library)
    answer = json.loads((REAL / "models_1580878.lora_illustrious.2025.json").read_text())
    ill_lora = with_metadata(
        models["kohya-sdxl"], library.parent / "ill.safetensors", {"ss_output_name": "semi"}
    )
    site.serve_real(answer, {ILLUSTRIOUS_FILE: ill_lora.read_bytes()})
    hub("install", f"civitai:{ILLUSTRIOUS_MODEL}@1967584", "-y")
    yield hub
    site.close()


def evidence(hub: HubRunner, ref: str) -> tuple[str, list[dict]]:
    art = hub("show", ref, "--json").json()
    return art["family"], art["family_evidence"]


def test_family_from_each_kind_of_evidence(scanned):
    hub = scanned
    family, ev = evidence(hub, "lora-pony")
    assert family == "Pony" and ev[0]["source"] == "training-base"
    assert "ckpt-pony" in ev[0]["detail"]
    assert [e["family"] for e in ev[1:]] == ["SDXL 1.0"]  # kohya's own word, weaker
    assert evidence(hub, "lora-xl")[0] == "SDXL 1.0"
    assert evidence(hub, "ckpt-xl")[1][0]["detail"].startswith("modelspec.architecture")
    family, ev = evidence(hub, "Semi_realistic")
    assert family == "Illustrious" and ev[0]["source"] == "share-site"
    assert "1967584" in ev[0]["detail"]
    assert evidence(hub, "lora-noob")[0] == "NoobAI"
    assert evidence(hub, "emb-xl") == ("unknown", [])  # no evidence: never the file name
    assert evidence(hub, "lora-sd1")[0] == "SD 1.5"
    why = hub("show", "lora-pony", "--why").out
    assert "family: Pony by training-base" in why and "also: SDXL 1.0 by metadata" in why


def test_user_override_wins_and_survives_a_rescan(scanned, library):
    hub = scanned
    art = hub("set", "lora-xl", "--family", "pony", "--json").json()
    assert art["family"] == "Pony" and "family" in art["overrides"]
    path = library / "lora-xl.safetensors"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the scan re-reads it
    assert str(path) in hub("scan", library, "--json").json()["updated"]
    family, ev = evidence(hub, "lora-xl")
    assert family == "Pony" and ev[0]["source"] == "user"
    hub("set", "lora-xl", "--family", "auto")
    assert evidence(hub, "lora-xl")[0] == "SDXL 1.0"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unknown_labels_are_kept_as_given(scanned):
    art = scanned("set", "emb-xl", "--family", "Flux.2 D", "--json").json()
    assert art["family"] == "Flux.2 D"  # not Flux.1, not mapped by prefix
    assert scanned("list", "--family", "flux.2 d", "--json").json() == []  # exact label
    assert [a["name"] for a in scanned("list", "--family", "Flux.2 D", "--json").json()] == [
        "emb-xl"
    ]
    scanned("set", "emb-xl", "--family", "auto")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("ckpt-xl", ["emb-xl", "lora-xl"]),
        ("ckpt-pony", ["emb-xl", "lora-pony"]),
        ("ckpt-ill", ["Semi_realistic", "emb-xl", "lora-noob"]),  # Illustrious takes NoobAI
    ],
)
def test_fits_lists_exactly_the_fitting_add_ons(scanned, model, expected):
    names = sorted(a["name"] for a in scanned("list", "--fits", model, "--json").json())
    assert names == sorted(expected)
    found = scanned("search", "", "--fits", model, "--json").json()
    assert sorted(a["name"] for a in found) == sorted(expected)
    grouped = scanned("fits", model, "--json").json()
    assert sorted(a["name"] for kind in ("lora", "embedding") for a in grouped.get(kind, [])) == (
        sorted(expected)
    )
    assert all(a["kind"] == "embedding" for a in grouped.get("embedding", []))


def test_family_filter(scanned):
    names = [a["name"] for a in scanned("list", "--family", "Pony", "--json").json()]
    assert sorted(names) == ["ckpt-pony", "lora-pony"]
    narrowed = scanned("list", "--fits", "ckpt-ill", "--family", "NoobAI", "--json").json()
    assert [a["name"] for a in narrowed] == ["lora-noob"]


def test_generate_warns_on_family_and_refuses_another_base(scanned):
    hub = scanned
    args = ("generate", "a castle", "--model", "ckpt-xl", "--dry-run")
    warned = hub(*args, "--lora", "lora-pony")
    [line] = [x for x in warned.err.splitlines() if x.startswith("warning:")]
    assert "lora-pony is for Pony" in line and "ckpt-xl is SDXL 1.0" in line
    assert "training-base" in line and "modelspec.architecture" in line
    quiet = hub(*args, "--lora", "lora-pony", "--allow-family")
    assert "warning" not in quiet.err
    assert "warning" not in hub(*args, "--lora", "lora-xl").err
    refused = hub(*args, "--lora", "lora-sd1", ok=False)
    assert refused.code != 0 and "does not fit" in refused.err


def test_training_base_known_to_the_site_by_hash(hub, site, models, tmp_path):
    """A LoRA trained on a checkpoint nobody here holds: `hub identify` asks the site for
    that checkpoint's SHA-256 (in the same bulk request) and the LoRA inherits its label."""
    base_bytes = b"checkpoint bytes the site knows" * 100
    base_sha = hashlib.sha256(base_bytes).hexdigest()
    site.add(
        Hosted(
            60,
            600,
            6000,
            base_bytes,
            "ponyish.safetensors",
            "Ponyish",
            "Checkpoint",
            base_model="Pony",
        )
    )
    folder = tmp_path / "l"
    folder.mkdir()
    with_metadata(
        models["kohya-sdxl"],
        folder / "trained.safetensors",
        {"ss_new_sd_model_hash": base_sha, "ss_base_model_version": "sdxl_base_v1-0"},
    )
    hub("scan", folder)
    assert evidence(hub, "trained")[0] == "SDXL 1.0"
    report = hub("identify", "--json").json()
    assert report["matched"] == [] and report["requests"] <= 2
    assert any(base_sha.upper() in r.get("body", []) for r in site.api_requests)
    family, ev = evidence(hub, "trained")
    assert family == "Pony" and ev[0]["source"] == "training-base"
    assert "civitai version 600" in ev[0]["detail"]


def test_a_plugin_extends_the_family_tables(ctx):
    from hub import families, hookimpl, plugins

    class MoreFamilies:
        @hookimpl
        def register_families(self, register):
            register("more", families.FamilyTable(accepts={"Pony": ("SDXL 1.0",)}))

    families.tables.cache_clear()
    assert families.family_fit("Pony", "SDXL 1.0") == "mismatch"
    plugins.add_plugin(MoreFamilies(), name="more-families")
    families.tables.cache_clear()
    try:
        assert families.family_fit("Pony", "SDXL 1.0") == "accepted"
        assert families.family_fit("Illustrious", "NoobAI") == "accepted"  # built-in kept
        assert families.family_fit("SDXL 1.0", "Pony") == "mismatch"  # one way only
    finally:
        families.tables.cache_clear()


def test_merge_warns_on_family(scanned):
    baked = scanned("merge", "ckpt-xl", "--lora", "lora-pony", "--name", "baked", "--json")
    [line] = [x for x in baked.err.splitlines() if x.startswith("warning:")]
    assert "lora-pony is for Pony" in line and "ckpt-xl is SDXL 1.0" in line
    assert "--allow-family" in line
    scanned("rm", "baked", "-y")
