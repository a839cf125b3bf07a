"""`hub import`, the registry's guarantees, and bad input, through the real command."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import struct

import pytest

pytestmark = pytest.mark.both_engines  # SQLite and a real PostgreSQL (tests/pg.py)


def store_files(home):
    root = home / "models"
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts]


def test_import_records_hashes_and_json_shape(hub, models):
    path = models["kohya-sd1"]
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    [art] = hub("import", path, "--tag", "Style", "--json").json()
    assert art["status"] == "added"
    assert art["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert art["hashes"]["autov2"] == hashlib.sha256(data).hexdigest()[:10]
    assert art["hashes"]["autov3"] == hashlib.sha256(data[8 + n :]).hexdigest()
    for key in (
        "name",
        "kind",
        "base",
        "format",
        "algo",
        "path",
        "size",
        "hashes",
        "tags",
        "trained_words",
        "source",
    ):
        assert key in art
    assert art["tags"] == ["style"]
    stored = hub.home / "models" / "Lora" / path.name
    assert art["path"] == str(stored)
    assert stored.read_bytes() == data
    listed = hub("list", "--json").json()
    assert [a["hashes"]["xxh3_128"] for a in listed] == [art["hashes"]["xxh3_128"]]


def test_same_bytes_twice_is_one_artifact(hub, models, tmp_path):
    copy = tmp_path / "renamed-copy.safetensors"
    shutil.copyfile(models["emb-sd1"], copy)
    hub("import", models["emb-sd1"])
    [again] = hub("import", copy, "--json").json()
    assert again["status"] == "exists"
    assert len(hub("list", "--json").json()) == 1
    assert len(store_files(hub.home)) == 1


def test_eight_concurrent_imports_give_one_row(hub, models):
    procs = [hub.popen("import", models["loha-sd1"], "--quiet") for _ in range(8)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _out, err, code in results:
        assert code == 0, err
        assert "locked" not in err
    rows = hub("list", "--json").json()
    assert len(rows) == 1
    assert len(store_files(hub.home)) == 1
    staging = hub.home / "models" / ".incoming"
    assert not list(staging.iterdir()) if staging.exists() else True


def _write_header(path, header: dict | bytes, data: bytes = b"", length: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


BAD = {
    "html.safetensors": lambda p: p.write_text("<!DOCTYPE html><html><body>Login</body></html>"),
    "html-space.safetensors": lambda p: p.write_text("\n  \t<html><body>Error</body></html>"),
    "html-bom.safetensors": lambda p: p.write_bytes(
        b"\xef\xbb\xbf<!DOCTYPE html>\r\n<html><head><title>Sign in</title></head></html>"
    ),
    "lfs.safetensors": lambda p: p.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    ),
    "empty.safetensors": lambda p: p.write_bytes(b""),
    "truncated.safetensors": lambda p: _write_header(
        p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 10
    ),
    "lying.safetensors": lambda p: _write_header(
        p,
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        },
        b"\0" * 12,
    ),
    "gap.safetensors": lambda p: _write_header(
        p,
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]},
        },
        b"\0" * 20,
    ),
    "huge-header.safetensors": lambda p: _write_header(p, b"{}", length=2**63),
    "duplicate.safetensors": lambda p: _write_header(
        p,
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        b"\0" * 4,
    ),
    "pickle.ckpt": lambda p: p.write_bytes(b"\x80\x02}q\x00."),
    "broken-lora.safetensors": lambda p: _write_header(
        p,
        {
            "lora_unet_x.lora_down.weight": {
                "dtype": "F32",
                "shape": [4, 8],
                "data_offsets": [0, 128],
            }
        },
        b"\0" * 128,
    ),
}
REASONS = {
    "html.safetensors": "HTML page",
    "html-space.safetensors": "HTML page",
    "html-bom.safetensors": "HTML page",
    "lfs.safetensors": "Git LFS pointer",
    "empty.safetensors": "empty file",
    "truncated.safetensors": "truncated",
    "lying.safetensors": "overlaps",
    "gap.safetensors": "gap",
    "huge-header.safetensors": "header length",
    "duplicate.safetensors": "duplicate key",
    "pickle.ckpt": "pickle",
    "broken-lora.safetensors": "only one of the down/up pair",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_and_registers_nothing(hub, tmp_path, models, name):
    hub("import", models["emb-sd2"])  # something already registered must survive
    before = hub("list", "--json").json()
    path = tmp_path / name
    BAD[name](path)
    result = hub("import", path, ok=False)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error: ") and str(path) in lines[0], result.err
    assert REASONS[name].lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.err
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1
    assert hub("list", "--json").json() == before
    assert len(store_files(hub.home)) == 1


def _with_header_length(source, target, length: int) -> None:
    """``source``'s tensors saved by safetensors with metadata padded to a header of
    ``length`` bytes."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(source)
    pad = 0
    for _ in range(3):
        save_file(tensors, target, metadata={"pad": "x" * pad})
        (got,) = struct.unpack("<Q", target.read_bytes()[:8])
        pad += length - got
    assert got == length


def test_header_length_0x3c20_is_safetensors_not_html(hub, tmp_path, models):
    """Header length 0x3C20 makes the file start with a space and '<'."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "angle.safetensors"
    _with_header_length(models["emb-sd1"], path, 0x3C20)
    assert path.read_bytes()[:9] == b" <\0\0\0\0\0\0{"
    shown = hub("show", path, "--json").json()
    assert (shown["kind"], shown["base"]) == ("embedding", "sd1")
    report = hub("scan", folder, "--json").json()
    assert report["added"] == [str(path)] and report["skipped"] == []
    hub("import", path, "--name", "angle-copy")
    rows = {a["name"]: a for a in hub("list", "--json").json()}
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert {r["hashes"]["sha256"] for r in rows.values()} == {sha}
    assert rows["angle"]["kind"] == "embedding"


def test_missing_path(hub, tmp_path):
    result = hub("import", tmp_path / "nope.safetensors", ok=False)
    assert result.code != 0 and "no such file" in result.err and "Traceback" not in result.err
    assert hub("list", "--json").json() == []


def test_refs_tags_search_and_ambiguity(hub, models, tmp_path):
    hub("import", models["kohya-sd1"], "--name", "pixel-art", "--tag", "style")
    hub("import", models["emb-sd1"], "--name", "pixel-art", "--tag", "character")
    hub("import", models["loha-sd1"], "--name", "watercolor")
    amb = hub("show", "pixel-art", ok=False)
    assert amb.code != 0 and "lora:pixel-art" in amb.err and "embedding:pixel-art" in amb.err
    lora = hub("show", "lora:pixel-art", "--json").json()
    sha = hashlib.sha256(models["kohya-sd1"].read_bytes()).hexdigest()
    assert hub("show", sha[:10], "--json").json()["id"] == lora["id"]
    assert hub("show", "sha256:" + sha, "--json").json()["id"] == lora["id"]
    assert hub("show", lora["hashes"]["xxh3_128"][:12], "--json").json()["id"] == lora["id"]
    names = {a["name"] for a in hub("search", "pixel", "--json").json()}
    assert names == {"pixel-art"}
    assert [a["kind"] for a in hub("search", "pix", "--tag", "style", "--json").json()] == ["lora"]
    assert [
        a["name"] for a in hub("search", "", "--kind", "lora", "--base", "sd1", "--json").json()
    ] == ["pixel-art", "watercolor"]
    hub("tag", "watercolor", "Soft", "paint")
    assert hub("search", "soft", "--json").json()[0]["name"] == "watercolor"
    hub("untag", "watercolor", "soft")
    assert hub("search", "soft", "--json").json() == []
    assert [a["name"] for a in hub("list", "--tag", "paint", "--json").json()] == ["watercolor"]


@pytest.mark.parametrize("query", ['"', "a OR", "name:x", "NEAR(", "*", "^x", "a AND b", "'"])
def test_search_takes_hostile_text_literally(hub, models, query):
    hub("import", models["emb-sd1"], "--name", "plain")
    result = hub("search", query, "--json")
    assert result.json() == []


def test_rm_asks_and_deletes_store_file(hub, models):
    hub("import", models["emb-sdxl"], "--name", "gone")
    path = hub.home / "models" / "embeddings" / "gone.safetensors"
    assert path.exists()
    refused = hub("rm", "gone", ok=False, input="n\n")
    assert refused.code != 0 and path.exists()
    removed = hub("rm", "gone", "-y", "--json").json()
    assert not path.exists()
    assert (removed["status"], removed["deleted_file"]) == ("removed", True)
    assert (removed["kind"], removed["name"], removed["path"]) == ("embedding", "gone", str(path))
    sha256 = hashlib.sha256(models["emb-sdxl"].read_bytes()).hexdigest()
    assert removed["hashes"]["sha256"] == sha256
    assert hub("list", "--json").json() == []


def test_rm_keep_file(hub, models):
    hub("import", models["emb-sdxl"], "--name", "kept")
    path = hub.home / "models" / "embeddings" / "kept.safetensors"
    removed = hub("rm", "kept", "-y", "--keep-file", "--json").json()
    assert (removed["name"], removed["deleted_file"]) == ("kept", False)
    assert path.exists() and hub("list", "--json").json() == []


def test_verify_detects_changed_and_missing_and_adopts_orphans(hub, models, tmp_path):
    hub("import", models["emb-sd1"], "--name", "one")
    hub("import", models["emb-sd2"], "--name", "two")
    assert hub("verify", "--json").json()["ok"]
    one = hub.home / "models" / "embeddings" / "one.safetensors"
    data = bytearray(one.read_bytes())
    data[-1] ^= 0xFF
    one.write_bytes(bytes(data))
    (hub.home / "models" / "embeddings" / "two.safetensors").unlink()
    orphan = hub.home / "models" / "Lora" / "orphan.safetensors"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models["kohya-sdxl"], orphan)  # as if killed between move and row
    result = hub("verify", "--json", ok=False)
    assert result.code == 1
    report = result.json()
    assert report["changed"] == [str(one)]
    assert report["missing"] == [str(hub.home / "models" / "embeddings" / "two.safetensors")]
    assert report["adopted"] == [str(orphan)]
    rows = {a["name"]: a for a in hub("list", "--json").json()}
    assert rows["one"]["hash_status"] == "changed"
    assert rows["two"]["hash_status"] == "missing"
    assert rows["orphan"]["kind"] == "lora" and rows["orphan"]["base"] == "sdxl"


@pytest.mark.sqlite_only
def test_database_is_wal_and_versioned(hub, models):
    hub("import", models["emb-sd1"])
    con = sqlite3.connect(hub.home / "registry.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    from hub.registry.db import HEAD_REVISION

    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD_REVISION
    rows = con.execute("SELECT COUNT(*) FROM artifact").fetchone()[0]
    con.close()
    hub("list")  # reopening never re-creates: the row is still there
    con = sqlite3.connect(hub.home / "registry.db")
    assert con.execute("SELECT COUNT(*) FROM artifact").fetchone()[0] == rows == 1
