"""``hub export`` then ``hub import-registry`` into an empty home: the same metadata and the
same search results; importing twice adds nothing. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from conftest import HubRunner

pytestmark = pytest.mark.both_engines

KEEP = ("name", "kind", "base", "hashes", "tags", "trained_words", "description", "source")


def _view(runner: HubRunner) -> list[dict]:
    return sorted(
        ({k: a[k] for k in KEEP} for a in runner("list", "--json").json()),
        key=lambda a: a["hashes"]["sha256"],
    )


def test_export_then_import_into_an_empty_home(hub, models, tmp_path, registry_url, request):
    hub("import", models["kohya-sd1"], "--name", "pixel-art", "--tag", "style")
    hub("import", models["emb-sd1"], "--name", "bad-hands", "--tag", "fix")
    hub("tag", "pixel-art", "retro")
    out = tmp_path / "registry.json"
    hub("export", "--out", out)
    data = json.loads(out.read_text())
    assert data["format"] == "sd-hub-registry" and len(data["artifacts"]) == 2

    other = HubRunner(tmp_path / "home-b", hub.cwd)
    other.env = dict(hub.env) | {"HUB_HOME": str(tmp_path / "home-b")}
    if registry_url:
        server = request.getfixturevalue("pg_server")
        other.env["HUB_DATABASE_URL"] = server.url(server.new_database())
    first = other("import-registry", out, "--json").json()
    assert len(first["added"]) == 2 and first["merged"] == []
    assert _view(other) == _view(hub)
    for query in ("pixel", "retro", "hands", "fix"):
        mine = [a["name"] for a in hub("search", query, "--json").json()]
        theirs = [a["name"] for a in other("search", query, "--json").json()]
        assert mine == theirs and mine
    again = other("import-registry", out, "--json").json()
    assert again["added"] == [] and len(again["merged"]) == 2
    assert len(other("list", "--json").json()) == 2
    assert {a["hash_status"] for a in other("list", "--json").json()} == {"ok"}  # same machine
