"""`hub scan` of a generated library (real add-on headers, copies across an A1111 and a
ComfyUI tree): listed from headers before any hash, hashes equal hashlib's, copies become
locations, SIGKILL at random points loses and repeats nothing, reads never wait."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
from addon_library import build_library


@pytest.fixture(scope="module")
def library(tmp_path_factory, models) -> tuple[Path, list[Path]]:
    """400 add-ons (20 of them in both trees), a VAE and a checkpoint-sized file."""
    root = tmp_path_factory.mktemp("library")
    paths = build_library(root, 400, seed=3)
    vae = root / "a1111" / "models" / "VAE" / "clear.safetensors"
    vae.parent.mkdir(parents=True)
    shutil.copyfile(models["vae"], vae)
    ckpt = root / "comfyui" / "models" / "checkpoints" / "mini.safetensors"
    ckpt.parent.mkdir(parents=True)
    shutil.copyfile(models["mini-sd1-inpaint"], ckpt)
    return root, [*paths, vae, ckpt]


def _hub_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_HOME"] = str(home)
    return env


def _hub(home: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", *map(str, args)],
        env=_hub_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _dump(home: Path) -> dict[str, object]:
    """The registry as comparable values: per primary path, the artifact's columns (no ids or
    times), its tags and its locations."""
    con = sqlite3.connect(home / "registry.db")
    con.row_factory = sqlite3.Row
    skip = {"id", "created_at", "updated_at", "inode", "mtime_ns"}
    out = {}
    for row in con.execute("SELECT * FROM artifact"):
        art = {k: row[k] for k in row.keys() if k not in skip}  # noqa: SIM118
        art["tags"] = sorted(
            tuple(t)
            for t in con.execute("SELECT name, origin FROM tag WHERE artifact_id = ?", (row["id"],))
        )
        art["locations"] = sorted(
            r[0]
            for r in con.execute("SELECT path FROM location WHERE artifact_id = ?", (row["id"],))
        )
        out[row["path"]] = art
    con.close()
    return out


def _whole(home: Path) -> dict[str, int]:
    """Checks that hold after any kill; returns the size of every location already hashed."""
    con = sqlite3.connect(home / "registry.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    orphans = con.execute(
        "SELECT COUNT(*) FROM artifact a WHERE NOT EXISTS "
        "(SELECT 1 FROM location l WHERE l.artifact_id = a.id AND l.path = a.path)"
    ).fetchone()[0]
    assert orphans == 0  # every artifact has its primary path among its locations
    half = con.execute(
        "SELECT COUNT(*) FROM artifact WHERE (hash_status = 'pending') != "
        "(xxh3_128 LIKE 'pending:%')"
    ).fetchone()[0]
    assert half == 0  # a row is either pending with no hashes, or hashed
    done = dict(
        con.execute(
            "SELECT l.path, l.size FROM location l JOIN artifact a ON a.id = l.artifact_id "
            "WHERE a.hash_status = 'ok'"
        ).fetchall()
    )
    con.close()
    return done


def test_listed_from_headers_then_hashed_like_hashlib(ctx, library):
    from hub.registry.queries import list_artifacts, list_json, search
    from hub.scan import scan

    root, paths = library
    seen_at_hashing = {}

    def on_progress(p):
        if p.stage == "hashing" and not seen_at_hashing:
            with ctx.db.reader() as reader:  # the registry as another command sees it now
                seen_at_hashing["rows"] = list_artifacts(reader)
                seen_at_hashing["found"] = search(reader, "trig13")
                seen_at_hashing["json"] = json.loads(list_json(reader))

    report = scan(ctx, root, progress=on_progress)
    listed = seen_at_hashing["rows"]
    assert seen_at_hashing["json"] == listed  # what `hub list --json` prints, built by SQLite
    assert len(listed) == len(paths)  # every file, copies included, before any hash
    assert {r["hash_status"] for r in listed} == {"pending"}
    assert {r["hashes"]["sha256"] for r in listed} == {None}
    found = sorted(r["name"] for r in seen_at_hashing["found"])  # words are prefix-matched
    assert found == ["neon_kohya-sdxl_00013", "neon_kohya-sdxl_00133"]
    by_name = {r["name"]: r for r in listed}
    assert by_name["neon_kohya-sdxl_00013"]["trained_words"] == ["trig13", "neon"]
    assert by_name["watercolor_kohya-sdxl_00001"]["base"] == "sdxl"
    assert by_name["clear"]["kind"] == "vae"

    copies = [p for p in paths if p.parent.name == "shared"]
    assert len(copies) == 20
    assert report.hashed_bytes == sum(p.stat().st_size for p in paths)
    assert len(report.locations_added) == len(copies) and report.pending == 0
    from hub.registry.queries import locations_of

    with ctx.db.reader() as reader:
        rows = list_artifacts(reader)
        places = {r["id"]: [loc["path"] for loc in locations_of(reader, r["id"])] for r in rows}
    assert len(rows) == len(paths) - len(copies)
    every = {}
    for row in rows:
        for place in places[row["id"]]:
            every[place] = row
    assert sorted(every) == sorted(str(p) for p in paths)
    for path in paths:
        data = path.read_bytes()
        row = every[str(path)]
        assert row["hash_status"] == "ok"
        assert row["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["hashes"]["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
    shared = [r for r in rows if len(places[r["id"]]) == 2]
    assert len(shared) == len(copies)


def test_list_json_text_equals_the_rows_json(ctx, library):
    """`hub list --json` (JSON built by SQLite) holds what :func:`to_json` makes of every row:
    site sources, tags (sorted, not ASCII), locked fields, preferred weights, filters."""
    from hub.families import lock
    from hub.registry import writes
    from hub.registry.queries import Filters, list_artifacts, list_json
    from hub.scan import scan

    scan(ctx, library[0])
    with ctx.db.session() as session:
        rows = session.rows("SELECT * FROM artifact ORDER BY id LIMIT 3")
        first, second, third = (writes.Row(r) for r in rows)
        writes.add_tags(session, first, ["Zeta", "ÉTÉ", "alpha"])
        writes.update(session, first, {"kind_locked": True, "base_locked": True})
        writes.update(
            session,
            second,
            {"preferred_weight": 0.75, "source_ref": '{"site": "civitai", "id": 5, "file": null}'},
        )
        writes.update(session, third, {"hash_status": "pending", "description": "日本語 <b>"})
    lock(ctx.db, first.id, "sdxl")
    with ctx.db.reader() as reader:
        for args in [
            (),
            ("lora",),
            (None, "sdxl"),
            (None, None, ["été"]),
            (None, None, None, Filters(families=("sdxl",))),
        ]:
            assert json.loads(list_json(reader, *args)) == list_artifacts(reader, *args), args
        made = {r["id"]: r for r in json.loads(list_json(reader))}
    assert made[first.id]["tags"] == ["alpha", "zeta", "été"]
    assert made[first.id]["overrides"] == ["kind", "base", "family"]
    assert made[second.id]["source"] == {"name": "local", "site": "civitai", "id": 5, "file": None}
    assert made[second.id]["preferred_weight"] == 0.75
    assert made[third.id]["hashes"]["sha256"] is None


def test_sigkill_at_random_points_then_rescan_equals_an_uninterrupted_scan(tmp_path, library):
    root, paths = library
    total = sum(p.stat().st_size for p in paths)
    reference = tmp_path / "reference"
    started = time.perf_counter()
    assert _hub(reference, "scan", root, "--json").returncode == 0
    whole_scan = time.perf_counter() - started  # kill points scale with this machine's speed
    expected = _dump(reference)

    home = tmp_path / "killed"
    assert _hub(home, "list").returncode == 0  # an existing registry, as a user has
    rng = random.Random(11)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "scan", str(root), "-q"],
            env=_hub_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.1, 0.8) * whole_scan)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _whole(home)
    assert kills >= 1
    done = _whole(home)
    left = total - sum(done.values())
    final = _hub(home, "scan", root, "--json")
    assert final.returncode == 0, final.stderr
    again = json.loads(final.stdout)
    assert again["hashed_bytes"] <= left
    assert again["pending"] == 0
    assert _dump(home) == expected
    assert json.loads(_hub(home, "scan", root, "--json").stdout)["hashed_bytes"] == 0


def test_list_and_search_answer_while_a_scan_writes(tmp_path, library):
    root, paths = library
    home = tmp_path / "home"
    assert _hub(home, "list").returncode == 0  # the registry exists, as a user's does
    scan = subprocess.Popen(
        [sys.executable, "-m", "hub", "scan", str(root), "-q"],
        env=_hub_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    during = 0
    try:
        while scan.poll() is None:
            for args in (("list", "--json"), ("search", "pixel", "--json")):
                got = _hub(home, *args)
                assert got.returncode == 0, got.stderr
                assert "locked" not in got.stderr
                json.loads(got.stdout)
                during += scan.poll() is None
    finally:
        scan.wait(timeout=600)
    assert scan.returncode == 0, scan.stderr.read()
    assert during >= 2
    assert len(json.loads(_hub(home, "list", "--json").stdout)) == len(paths) - 20
