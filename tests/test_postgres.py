"""A team's registry on a real PostgreSQL server (tests/pg.py): concurrent writers, the server
going away mid-command, the password never printed, and the same answers as SQLite."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import requests
from pg import PASSWORD, start_server

from hub.registry.db import default_machine
from hub.serve import background


@pytest.fixture
def pg_hub(hub, pg_server):
    """``hub`` on a fresh database of the session's PostgreSQL server."""
    name = pg_server.new_database()
    hub.env["HUB_DATABASE_URL"] = pg_server.url(name)
    yield hub
    pg_server.drop_database(name)


def _rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        return con.execute(sql).fetchall()


def test_eight_processes_import_and_tag_into_one_registry(pg_hub, models, tmp_path):
    files = [models["loha-sd1"], models["emb-sd1"]]
    procs = [pg_hub.popen("import", files[n % 2], "--tag", f"team{n}", "--quiet") for n in range(8)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _out, err, code in results:
        assert code == 0, err
    rows = pg_hub("list", "--json").json()
    want = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert sorted(a["hashes"]["sha256"] for a in rows) == sorted(want)  # one row per content
    tags = {a["hashes"]["sha256"]: set(a["tags"]) for a in rows}
    for n in range(8):
        assert f"team{n}" in tags[hashlib.sha256(files[n % 2].read_bytes()).hexdigest()]
    # tagging at once from 8 processes: no tag lost
    [lora] = [a for a in rows if a["kind"] == "lora"]
    procs = [pg_hub.popen("tag", lora["hashes"]["sha256"][:12], f"extra{n}") for n in range(8)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    shown = pg_hub("show", lora["hashes"]["sha256"][:12], "--json").json()
    assert {f"extra{n}" for n in range(8)} <= set(shown["tags"])
    url = pg_hub.env["HUB_DATABASE_URL"]
    assert _rows(url, "SELECT count(*) FROM artifact")[0][0] == 2
    assert _rows(url, "SELECT count(*) FROM artifact_search")[0][0] == 2


def test_server_stopped_mid_scan_is_one_line_and_nothing_half_written(hub, models, tmp_path):
    server = start_server()  # its own server: this test stops it
    try:
        url = server.url(server.new_database())
        hub.env["HUB_DATABASE_URL"] = url
        tree = tmp_path / "tree"
        tree.mkdir()
        for n in range(3000):  # distinct contents, several write batches (hub.scan.BATCH_FILES)
            data = bytearray(models["emb-sd1"].read_bytes())
            data[-2:] = n.to_bytes(2, "little")
            (tree / f"e{n:02}.safetensors").write_bytes(bytes(data))
        proc = hub.popen("scan", tree)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if _rows(url, "SELECT count(*) FROM artifact")[0][0] >= 3:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        server.stop("immediate")
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert "Traceback" not in err
        errors = [line for line in lines if line.startswith("error")]
        assert len(errors) == 1 and "127.0.0.1" in errors[0], err
        assert PASSWORD not in err
        server.start()
        [(artifacts,)] = _rows(url, "SELECT count(*) FROM artifact")
        [(indexed,)] = _rows(url, "SELECT count(*) FROM artifact_search")
        assert 3 <= artifacts < 3000 and indexed == artifacts  # every row whole, none partial
        # a row is listed from its header first: it is either pending or fully hashed
        states = _rows(url, "SELECT hash_status, length(sha256) FROM artifact")
        assert all((s, n) == ("pending", 0) or (s == "ok" and n == 64) for s, n in states)
        down = hub("list", ok=True)  # the server is back: the registry is usable
        assert down.code == 0
    finally:
        server.stop("immediate")
        shutil.rmtree(server.folder, ignore_errors=True)


def test_server_down_is_one_line_naming_it_without_password(hub, pg_server):
    hub.env["HUB_DATABASE_URL"] = pg_server.url("postgres").replace(f":{pg_server.port}/", ":1/")
    result = hub("list", ok=False)
    assert result.code != 0 and "Traceback" not in result.err
    assert "postgresql+psycopg://hub:***@127.0.0.1:1/postgres" in result.err
    assert PASSWORD not in result.err + result.out


def test_password_from_pgpassword_and_config_masks_only_the_password(pg_hub, pg_server):
    url = pg_hub.env["HUB_DATABASE_URL"]
    database = url.rsplit("/", 1)[1]
    pg_hub.env["HUB_DATABASE_URL"] = pg_server.url(database, password=False)
    pg_hub.env["PGPASSWORD"] = PASSWORD
    assert pg_hub("list", "--json").json() == []
    del pg_hub.env["PGPASSWORD"]
    pg_hub.env["HUB_DATABASE_URL"] = url
    shown = pg_hub("config", "--json").json()["database"]
    assert shown == f"postgresql+psycopg://hub:***@127.0.0.1:{pg_server.port}/{database}"
    assert PASSWORD not in pg_hub("config").out


@pytest.mark.both_engines
def test_case_insensitive_names_and_search_same_on_both_engines(hub, models):
    hub("import", models["kohya-sd1"], "--name", "Pixel_Art", "--tag", "Retro")
    hub("import", models["emb-sd1"], "--name", "Café-Noir", "--tag", "pixel")
    hub("import", models["loha-sd1"], "--name", "watercolor")
    hub("tag", "PIXEL_ART", "pixel")
    assert hub("show", "pixel_art", "--json").json()["name"] == "Pixel_Art"
    assert hub("show", "lora:PIXEL_ART", "--json").json()["name"] == "Pixel_Art"
    assert [a["name"] for a in hub("list", "--json").json()] == [
        "Café-Noir",
        "Pixel_Art",
        "watercolor",
    ]
    names = [a["name"] for a in hub("search", "pixel", "--json").json()]
    assert names == ["Pixel_Art", "Café-Noir"]  # name and tag beat tag alone
    assert [a["name"] for a in hub("search", "cafe", "--json").json()] == ["Café-Noir"]
    assert [a["name"] for a in hub("search", "art pix", "--json").json()] == ["Pixel_Art"]
    assert [a["name"] for a in hub("search", "ret", "--json").json()] == ["Pixel_Art"]
    assert [a["name"] for a in hub("search", "noir OR water", "--json").json()] == []


def _fill(url: str, store: Path, count: int) -> list[str]:
    """``count`` artifacts inserted directly (COPY), each with a small file in the store;
    returns their SHA-256 hashes."""
    import psycopg

    folder = store / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    columns = (
        "kind, name, base, format, path, in_store, size, mtime_ns, inode, xxh3_128, sha256, "
        "hash_status, source, trained_words, kind_locked, base_locked, created_at, updated_at"
    )
    hashes = []
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with (
        psycopg.connect(dsn) as con,
        con.cursor() as cur,
        cur.copy(f"COPY artifact ({columns}) FROM STDIN") as copy,
    ):
        for n in range(count):
            data = f"artifact {n}".encode()
            path = folder / f"a{n:05}.safetensors"
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            hashes.append(sha)
            copy.write_row(
                ("lora", f"a{n:05}", "sd1", "safetensors", str(path), True, len(data), 0, 0)
                + (hashlib.md5(data).hexdigest(), sha, "ok", "local", "[]", False, False)
                + ("2026-01-01 00:00:00+00", "2026-01-01 00:00:00+00")
            )
    with psycopg.connect(dsn) as con:  # each file a location on this machine, as imports do
        con.execute(
            "INSERT INTO location (artifact_id, path, machine, device, inode, size, mtime_ns, "
            "created_by_hub, seen_at) SELECT id, path, %s, 0, inode, size, mtime_ns, true, "
            "updated_at FROM artifact",
            (default_machine(),),
        )
    return hashes


def test_serve_two_workers_pages_ten_thousand_artifacts_exactly_once(pg_hub, tmp_path):
    url = pg_hub.env["HUB_DATABASE_URL"]
    pg_hub("list")  # creates the schema
    hashes = _fill(url, pg_hub.home / "models", 10_000)
    env = {k: v for k, v in pg_hub.env.items()}
    with background(env, pg_hub.cwd, "--workers", "2") as origin:
        seen: list[str] = []
        page = requests.get(f"{origin}/api/v1/models", params={"limit": 100}, timeout=30).json()
        while True:
            seen += [m["modelVersions"][0]["files"][0]["hashes"]["SHA256"] for m in page["items"]]
            if not page["metadata"].get("nextPage"):
                break
            page = requests.get(page["metadata"]["nextPage"], timeout=30).json()
        assert len(seen) == 10_000 and {s.lower() for s in seen} == set(hashes)
        wanted = hashes[::100]
        bulk = requests.post(f"{origin}/api/v1/model-versions/by-hash", json=wanted, timeout=30)
        got = [v["files"][0]["hashes"]["SHA256"].lower() for v in bulk.json()]
        assert sorted(got) == sorted(wanted) and len(wanted) == 100
