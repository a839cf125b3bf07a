"""Two homes ("machines") sharing one registry: machine A imports and serves, machine B
installs A's artifacts by name, tag or hash from A's ``hub serve``, verified, and the
artifact stays one row with a location per machine. Each machine is its own ``hub``
process with its own hub.toml (``machine = ...``), on PostgreSQL and on a shared SQLite
file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from conftest import HubRunner

from hub.serve import background

pytestmark = pytest.mark.both_engines


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _machine(tmp_path: Path, name: str, url: str, extra: str = "") -> HubRunner:
    """A home with its own files folder and a hub.toml naming the machine and the registry."""
    home = tmp_path / f"home-{name}"
    work = tmp_path / f"work-{name}"
    work.mkdir()
    config = work / "hub.toml"
    config.write_text(f'[hub]\nmachine = "{name}"\ndatabase_url = "{url}"\n{extra}')
    runner = HubRunner(home, work)
    runner.env["HUB_CONFIG"] = str(config)
    return runner


def _locations(url: str) -> list[tuple[int, str, str]]:
    """(artifact id, machine, path) of every location, read straight from the database."""
    sql = "SELECT artifact_id, machine, path FROM location ORDER BY artifact_id, machine"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            return [tuple(r) for r in con.execute(sql)]
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con:
        return [tuple(r) for r in con.execute(sql)]


def _by_name(runner: HubRunner) -> dict[str, dict]:
    return {a["name"]: a for a in runner("list", "--json").json()}


def test_machine_b_installs_from_machine_a(tmp_path, models, registry_url):
    url = registry_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = _machine(tmp_path, "a", url)
    a("import", models["kohya-sd1"], "--name", "pixel", "--tag", "style")
    a("import", models["emb-sd1"], "--name", "shiny", "--tag", "gloss")
    a("import", models["loha-sd1"], "--name", "third")
    pixel_sha, shiny_sha = _sha(models["kohya-sd1"]), _sha(models["emb-sd1"])
    a_paths = {n: art["path"] for n, art in _by_name(a).items()}
    assert all(p.startswith(str(a.home)) for p in a_paths.values())

    with background(a.env, a.cwd) as team_url:
        b = _machine(
            tmp_path, "b", url, f'\n[sources.team]\ntype = "civitai"\nurl = "{team_url}"\n'
        )
        # nothing of A's is a file of B's
        assert {n: art["path"] for n, art in _by_name(b).items()} == dict.fromkeys(a_paths)

        got = b("install", "pixel", "--json").json()
        assert got["status"] == "located"
        b_pixel = Path(got["artifact"]["path"])
        assert b_pixel.is_relative_to(b.home) and _sha(b_pixel) == pixel_sha
        got = b("install", "tag:gloss", "--json").json()  # by tag
        assert got["status"] == "located" and _sha(Path(got["artifact"]["path"])) == shiny_sha
        again = b("install", f"sha256:{pixel_sha}", "--json").json()  # by hash, held already
        assert again["status"] == "exists" and again["artifact"]["path"] == str(b_pixel)

    # one row per content; each machine a location of it; nobody sees the other's paths
    ids = {n: art["id"] for n, art in _by_name(a).items()}
    assert len(ids) == 3
    where = {(i, m): p for i, m, p in _locations(url)}
    assert where == {
        (ids["pixel"], "a"): a_paths["pixel"],
        (ids["pixel"], "b"): str(b_pixel),
        (ids["shiny"], "a"): a_paths["shiny"],
        (ids["shiny"], "b"): _by_name(b)["shiny"]["path"],
        (ids["third"], "a"): a_paths["third"],
    }
    assert {n: art["path"] for n, art in _by_name(a).items()} == a_paths
    b_list = _by_name(b)
    assert b_list["pixel"]["path"] == str(b_pixel) and b_list["third"]["path"] is None
    assert "style" in b_list["pixel"]["tags"]

    # A's server is gone: B's own copies still count, what only A has is a clear error
    assert b("install", "pixel", "--json").json()["status"] == "exists"
    failed = b("install", "third", ok=False)
    assert failed.code != 0 and "Traceback" not in failed.err
    assert "third" in failed.err and "no team server serves it" in failed.err

    # `hub rm` on B forgets B's copy only: the row and A's file stay
    assert b("rm", "pixel", "-y", "--json").json()["status"] == "location removed"
    assert not b_pixel.exists() and Path(a_paths["pixel"]).is_file()
    assert _by_name(b)["pixel"]["path"] is None
    assert _by_name(a)["pixel"]["path"] == a_paths["pixel"]

    # importing content already registered (by A) adds B's tags to that row and a location
    c = _machine(tmp_path, "c", url)
    c("import", models["loha-sd1"], "--name", "other-name", "--tag", "from-c")
    rows = _by_name(c)
    assert set(rows) == {"pixel", "shiny", "third"}
    assert set(rows["third"]["tags"]) >= {"from-c"}
    assert Path(rows["third"]["path"]).is_relative_to(c.home)
    assert _by_name(a)["third"]["path"] == a_paths["third"]
    assert len(_locations(url)) == 5
