"""One artifact, many locations: the migration from the previous schema, `hub show`,
`hub rm PATH` and `hub verify` over every location."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3

from alembic import command
from alembic.config import Config

from hub.registry.db import MIGRATIONS, Database


def _previous_release_registry(home, files):
    """A registry as the previous release made it: schema 0001 only, two artifacts with
    tags and a lineage entry, written in SQL as that release wrote them."""
    home.mkdir()
    db = Database(f"sqlite:///{home / 'registry.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as con:
        cfg.attributes["connection"] = con
        command.upgrade(cfg, "0001")
    db.dispose()
    con = sqlite3.connect(home / "registry.db")
    for n, path in enumerate(files, start=1):
        data = path.read_bytes()
        st = path.stat()
        con.execute(
            "INSERT INTO artifact (id, kind, name, base, format, path, in_store, size, mtime_ns, "
            "inode, xxh3_128, sha256, hash_status, source, trained_words, kind_locked, "
            "base_locked, created_at, updated_at) VALUES (?, 'lora', ?, 'sd1', 'safetensors', "
            "?, 0, ?, ?, ?, ?, ?, 'ok', 'local', '[\"word\"]', 0, 0, "
            "'2026-01-02 03:04:05.000000', '2026-01-02 03:04:05.000000')",
            (
                n,
                path.stem,
                str(path),
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                f"{n:032x}",
                hashlib.sha256(data).hexdigest(),
            ),
        )
        con.execute("INSERT INTO tag (artifact_id, name, origin) VALUES (?, 'style', 'user')", (n,))
        con.execute(
            "INSERT INTO artifact_fts(rowid, name, tags, description, trained_words) "
            "VALUES (?, ?, 'style', '', 'word')",
            (n, path.stem),
        )
    con.execute(
        "INSERT INTO lineage (child_id, parent_id, parent_sha256, relation, params) "
        "VALUES (2, 1, NULL, 'merge', '{\"alpha\": 0.5}')"
    )
    con.commit()
    con.close()


def test_registry_of_the_previous_release_upgrades_in_place(hub, tmp_path, models):
    files = []
    for name, fixture in (("one", "kohya-sd1"), ("two", "loha-sd1")):
        files.append(tmp_path / f"{name}.safetensors")
        shutil.copyfile(models[fixture], files[-1])
    _previous_release_registry(hub.home, files)
    rows = {a["name"]: a for a in hub("list", "--json").json()}
    assert sorted(rows) == ["one", "two"]
    for path in files:
        art = rows[path.stem]
        assert art["tags"] == ["style"] and art["trained_words"] == ["word"]
        assert art["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    two = hub("show", "two", "--json").json()
    assert [(p["name"], p["relation"]) for p in two["lineage"]] == [("one", "merge")]
    assert [loc["path"] for loc in two["locations"]] == [str(files[1])]
    assert two["locations"][0]["device"] == os.stat(files[1]).st_dev
    assert [a["name"] for a in hub("search", "style", "--json").json()] == ["one", "two"]
    [backup] = list(hub.home.glob("registry.db.bak-0001-*"))
    con = sqlite3.connect(backup)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    assert con.execute("SELECT COUNT(*) FROM artifact").fetchone()[0] == 2
    con.close()


def _two_copies(tmp_path, models):
    a1111 = tmp_path / "a1111" / "models" / "Lora" / "pixel.safetensors"
    comfy = tmp_path / "comfyui" / "models" / "loras" / "pixel-copy.safetensors"
    for path in (a1111, comfy):
        path.parent.mkdir(parents=True)
        shutil.copyfile(models["kohya-sd1"], path)
    return a1111, comfy


def test_show_lists_every_location_and_rm_path_keeps_the_artifact(hub, tmp_path, models):
    a1111, comfy = _two_copies(tmp_path, models)
    hub("scan", tmp_path / "a1111")
    hub("tag", "pixel", "mine")
    report = hub("scan", tmp_path / "comfyui", "--json").json()
    assert report["added"] == [] and report["counts"]["locations_added"] == 1
    [art] = hub("list", "--json").json()
    assert art["name"] == "pixel" and art["tags"] == ["mine"]
    shown = hub("show", "pixel", "--json").json()
    assert [(p["path"], p["primary"]) for p in shown["locations"]] == [
        (str(a1111), True),
        (str(comfy), False),
    ]
    text = hub("show", "pixel").out
    assert f"location: {a1111} (primary)" in text and f"location: {comfy}" in text

    gone = hub("rm", a1111, "-y", "--json").json()
    assert gone["status"] == "location removed" and gone["path"] == str(comfy)
    assert a1111.exists()  # a file sd-hub did not make is never deleted
    [art] = hub("list", "--json").json()
    assert art["path"] == str(comfy) and art["tags"] == ["mine"]
    hub("rm", comfy, "-y")
    assert hub("list", "--json").json() == [] and comfy.exists()


def test_verify_checks_every_location(hub, tmp_path, models):
    a1111, comfy = _two_copies(tmp_path, models)
    hub("scan", tmp_path)
    report = hub("verify", "--json").json()
    assert sorted(report["ok"]) == sorted([str(a1111), str(comfy)])
    data = bytearray(comfy.read_bytes())
    data[-1] ^= 0xFF
    comfy.write_bytes(bytes(data))
    report = hub("verify", "--json", ok=False).json()
    assert report["ok"] == [str(a1111)] and report["changed"] == [str(comfy)]
    comfy.unlink()
    os.replace(a1111, a1111.with_name("moved.safetensors"))
    shutil.copyfile(models["kohya-sd1"], comfy)  # the original bytes are back at one place
    report = hub("verify", "--json", ok=False).json()
    assert report["ok"] == [str(comfy)] and report["missing"] == [str(a1111)]
    [art] = hub("list", "--json").json()
    assert art["path"] == str(comfy) and art["hash_status"] == "ok"


def test_list_and_show_say_hash_pending_until_the_hashes_are_in(ctx, hub, tmp_path, models):
    """A scan stopped after its header pass: the row is listed and shown, hashes pending;
    the next scan hashes it and nothing else."""
    from hub.scan import _Scan

    a1111, _ = _two_copies(tmp_path, models)
    assert ctx.settings.home == hub.home
    _Scan(ctx, a1111.parent, None).headers()  # headers written, then stopped
    rows = hub("list").out.splitlines()
    assert rows[1].split()[0] == "pixel" and "hash pending" in rows[1]
    assert "hash pending" in hub("show", "pixel").out
    assert hub("show", "pixel", "--json").json()["hashes"]["sha256"] is None
    report = hub("scan", a1111.parent, "--json").json()
    assert report["unchanged"] == 1 and report["hashed_bytes"] == a1111.stat().st_size
    shown = hub("show", "pixel", "--json").json()
    assert shown["hashes"]["sha256"] == hashlib.sha256(a1111.read_bytes()).hexdigest()
