"""``hub serve``: another home's ``hub install`` works against it through the normal Civitai
client; ranges resume; tokens are enforced; nothing outside the store is served; the web
page lists and filters the collection in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import minimodels as tm
import pytest
import requests
from conftest import HubRunner
from PIL import Image

from hub.serve import background


def _catalog(root: Path) -> dict[str, Path]:
    """A LoRA with a Civitai sidecar and a preview, an embedding and a LoHa."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "pixel": root / "pixel.safetensors",
        "soft": root / "soft.safetensors",
        "shiny": root / "shiny.safetensors",
    }
    shutil.copy(tm.kohya_lora("sd1"), files["pixel"])
    shutil.copy(tm.lycoris_lora("sd1", "loha"), files["soft"])
    shutil.copy(tm.embedding("sd1"), files["shiny"])
    (root / "pixel.civitai.info").write_text(
        json.dumps(
            {
                "name": "v1",
                "baseModel": "SD 1.5",
                "trainedWords": ["pixel art", "8bit"],
                "description": "<p>Crisp pixels</p>",
                "model": {"name": "pixel", "type": "LORA"},
            }
        )
    )
    Image.new("RGB", (16, 16), (200, 40, 40)).save(root / "pixel.preview.png")
    return files


@contextmanager
def serving(home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``hub serve --port 0`` in a subprocess; yields its URL."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environment |= {"HUB_HOME": str(home)} | (env or {})
    with background(environment, cwd, *args) as url:
        assert url.startswith("http://127.0.0.1:")
        yield url


@pytest.fixture
def server_home(tmp_path: Path) -> tuple[HubRunner, dict[str, Path]]:
    runner = HubRunner(tmp_path / "server-home", tmp_path)
    files = _catalog(tmp_path / "catalog")
    runner("import", str(files["pixel"]), "--tag", "style", "--tag", "retro")
    runner("import", str(files["soft"]), "--tag", "style")
    runner("import", str(files["shiny"]))
    return runner, files


def _client(tmp_path: Path, url: str, **env: str) -> HubRunner:
    client = HubRunner(tmp_path / "client-home", tmp_path)
    client.env |= {"HUB_CIVITAI_URL": url, **env}
    return client


def test_install_from_hub_serve_with_metadata(server_home, tmp_path):
    server, files = server_home
    with serving(server.home, tmp_path) as url:
        client = _client(tmp_path, url)
        found = client("search", "pixel", "--remote", "--kind", "lora", "--json").json()
        assert [i["name"] for i in found["items"]] == ["pixel"]
        out = client("install", "lora:pixel", "-y", "--json").json()
        by_hash = client(
            "install", "sha256:" + hashlib.sha256(files["shiny"].read_bytes()).hexdigest(), "-y"
        )
    assert by_hash.code == 0
    installed = Path(out["artifact"]["path"])
    assert (
        hashlib.sha256(installed.read_bytes()).hexdigest()
        == hashlib.sha256(files["pixel"].read_bytes()).hexdigest()
    )
    shown = client("show", "lora:pixel", "--json").json()
    assert sorted(shown["tags"]) == ["retro", "style"]
    assert shown["trained_words"] == ["pixel art", "8bit"]
    assert shown["preview"] and Path(shown["preview"]).is_file()
    kinds = {a["kind"] for a in client("list", "--json").json()}
    assert kinds == {"lora", "embedding"}


def test_pagination_and_shapes(server_home, tmp_path):
    server, _ = server_home
    with serving(server.home, tmp_path) as url:
        first = requests.get(f"{url}/api/v1/models", params={"limit": 2}, timeout=10).json()
        assert len(first["items"]) == 2 and first["metadata"]["nextCursor"]
        rest = requests.get(first["metadata"]["nextPage"], timeout=10).json()
        assert len(rest["items"]) == 1 and rest["metadata"] == {}
        loras = requests.get(
            f"{url}/api/v1/models", params=[("types", "LORA"), ("types", "LoCon")], timeout=10
        ).json()["items"]
        assert sorted(m["name"] for m in loras) == ["pixel", "soft"]
        version_in_model = loras[0]["modelVersions"][0]
        assert "modelId" not in version_in_model and "id" in version_in_model["images"][0]
        version = requests.get(
            f"{url}/api/v1/model-versions/{version_in_model['id']}", timeout=10
        ).json()
        assert version["modelId"] == loras[0]["id"] and version["files"][0]["primary"] is True
        sha = version["files"][0]["hashes"]["SHA256"]
        short = requests.get(
            f"{url}/api/v1/model-versions/by-hash/{sha[:10].lower()}", timeout=10
        ).json()
        assert short["id"] == version["id"]
        bulk = requests.post(
            f"{url}/api/v1/model-versions/by-hash", json=[sha.lower(), "0" * 64], timeout=10
        ).json()
        assert [v["id"] for v in bulk] == [version["id"]]
        assert requests.get(f"{url}/api/v1/models/999", timeout=10).status_code == 404
        assert (
            requests.get(f"{url}/api/v1/models", params={"limit": 101}, timeout=10).status_code
            == 400
        )


def test_ranged_requests_resume(server_home, tmp_path):
    server, files = server_home
    data = files["pixel"].read_bytes()
    with serving(server.home, tmp_path) as url:
        pixel = requests.get(f"{url}/api/v1/models", params={"query": "pixel"}, timeout=10)
        vid = pixel.json()["items"][0]["modelVersions"][0]["id"]
        whole = requests.get(f"{url}/api/download/models/{vid}", timeout=10)
        etag = whole.headers["ETag"]
        assert whole.content == data and "pixel.safetensors" in whole.headers["Content-Disposition"]
        part = requests.get(
            f"{url}/api/download/models/{vid}",
            headers={"Range": "bytes=1000-", "If-Range": etag},
            timeout=10,
        )
        assert part.status_code == 206 and part.content == data[1000:]
        assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        stale = requests.get(
            f"{url}/api/download/models/{vid}",
            headers={"Range": "bytes=1000-", "If-Range": '"other"'},
            timeout=10,
        )
        assert stale.status_code == 200 and stale.content == data
        # the client resumes a partial download with Range: prove it by planting a partial
        # whose bytes are wrong (right length): only a resumed download can end corrupted
        client = _client(tmp_path, url)
        sha = hashlib.sha256(data).hexdigest()
        staging = client.home / "models" / ".incoming"
        staging.mkdir(parents=True)
        part_file = staging / f"dl-{sha[:40]}.part"
        part_file.write_bytes(b"\0" * (len(data) // 2))
        (staging / f"{part_file.name}.json").write_text(
            json.dumps({"etag": etag, "filename": "pixel.safetensors", "size": len(data)})
        )
        refused = client("install", "lora:pixel", "-y", ok=False)
        assert refused.code != 0 and "SHA-256" in refused.err
        part_file.write_bytes(data[: len(data) // 2])
        (staging / f"{part_file.name}.json").write_text(
            json.dumps({"etag": etag, "filename": "pixel.safetensors", "size": len(data)})
        )
        client("install", "lora:pixel", "-y")
    assert client("list", "--json").json()[0]["hashes"]["sha256"] == sha


def test_token_is_required_and_checked(server_home, tmp_path):
    server, _ = server_home
    env = {"SERVE_TOKEN": "s3cret-team-token"}
    with serving(server.home, tmp_path, "--token-env", "SERVE_TOKEN", env=env) as url:
        assert requests.get(f"{url}/api/v1/models", timeout=10).status_code == 401
        wrong = _client(tmp_path, url, CIVITAI_API_TOKEN="wrong")
        result = wrong("install", "lora:pixel", "-y", ok=False)
        assert result.code != 0 and "token" in result.err.lower()
        assert "wrong" not in result.err
        right = _client(tmp_path, url, CIVITAI_API_TOKEN="s3cret-team-token")
        right("install", "lora:pixel", "-y")
        ok = requests.get(
            f"{url}/api/v1/models",
            headers={"Authorization": "Bearer s3cret-team-token"},
            timeout=10,
        )
        assert ok.status_code == 200


def test_nothing_outside_the_store_is_served(server_home, tmp_path):
    server, files = server_home
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(tm.lycoris_lora("sd1", "lokr"), outside / "scanned.safetensors")
    server("scan", str(outside))  # registered in place, outside the store
    stored = server("show", "lora:pixel", "--json").json()
    secret = tmp_path / "secret.safetensors"
    shutil.copy(files["pixel"], secret)
    Path(stored["path"]).unlink()
    Path(stored["path"]).symlink_to(secret)  # a link out of the store
    with serving(server.home, tmp_path) as url:
        names = [
            m["name"] for m in requests.get(f"{url}/api/v1/models", timeout=10).json()["items"]
        ]
        assert names == ["soft", "shiny"]  # by id: the order cursors page in
        rows = {a["name"]: a for a in server("list", "--json").json()}
        for name in ("scanned", "pixel"):
            r = requests.get(f"{url}/api/download/models/{rows[name]['id']}", timeout=10)
            assert r.status_code == 404 and r.content != secret.read_bytes()
        for path in ("/api/download/models/..%2F..%2Fetc%2Fpasswd", "/preview/../../etc/passwd"):
            assert requests.get(url + path, timeout=10).status_code == 404


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by the test set-up")
def test_web_page_in_headless_chromium(server_home, tmp_path):
    server, _ = server_home

    def dom(url: str) -> str:
        profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    with serving(server.home, tmp_path) as url:
        everything = dom(url + "/")
        tagged = dom(url + "/?tag=retro")
    for name in ("pixel", "soft", "shiny"):
        assert f"<h3>{name}</h3>" in everything
    assert "pixel art, 8bit" in everything and 'src="/preview/' in everything
    assert "<h3>pixel</h3>" in tagged and "<h3>soft</h3>" not in tagged
    assert "<h3>shiny</h3>" not in tagged and "1 artifact tagged" in tagged


def test_named_source_in_hub_toml(server_home, tmp_path):
    server, files = server_home
    env = {"SERVE_TOKEN": "team-token-123"}
    with serving(server.home, tmp_path, "--token-env", "SERVE_TOKEN", env=env) as url:
        work = tmp_path / "client-work"
        work.mkdir()
        (work / "hub.toml").write_text(
            f'[sources.team]\ntype = "civitai"\nurl = "{url}"\ntoken_env = "TEAM_TOKEN"\n'
        )
        client = HubRunner(tmp_path / "client-home", work)
        client.env |= {"TEAM_TOKEN": "team-token-123", "HUB_CIVITAI_URL": "http://127.0.0.9:9"}
        out = client("install", "team:lora:soft", "-y", "--json").json()
    assert out["artifact"]["source"]["name"] == "team"
    assert hashlib.sha256(Path(out["artifact"]["path"]).read_bytes()).hexdigest() == (
        hashlib.sha256(files["soft"].read_bytes()).hexdigest()
    )


def test_serve_json_reports_the_bound_address_as_one_line(server_home, tmp_path):
    server, files = server_home
    proc = server.popen("serve", "--port", "0", "--json")
    try:
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"host", "port", "url"}
        assert first["host"] == "127.0.0.1" and isinstance(first["port"], int) and first["port"]
        assert first["url"] == f"http://127.0.0.1:{first['port']}"
        page = requests.get(f"{first['url']}/api/v1/models", timeout=30).json()
        sha = hashlib.sha256(files["pixel"].read_bytes()).hexdigest()
        served = {
            i["name"]: i["modelVersions"][0]["files"][0]["hashes"]["SHA256"].lower()
            for i in page["items"]
        }
        assert served["pixel"] == sha and set(served) == {"pixel", "soft", "shiny"}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_by_hash_finds_a_vae_by_its_autov3_computed_on_demand(tmp_path):
    """A VAE is registered without AutoV3; a by-hash request with it computes and keeps it."""
    runner = HubRunner(tmp_path / "server-home", tmp_path)
    vae = tm.vae_file()
    runner("import", str(vae))
    data = vae.read_bytes()
    autov3 = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()
    assert runner("show", "vae:" + vae.stem, "--json").json()["hashes"]["autov3"] is None
    with serving(runner.home, tmp_path) as url:
        found = requests.get(
            f"{url}/api/v1/model-versions/by-hash/{autov3[:12].upper()}", timeout=60
        )
    assert found.status_code == 200
    assert found.json()["files"][0]["hashes"]["AutoV3"] == autov3[:12].upper()
    assert runner("show", "vae:" + vae.stem, "--json").json()["hashes"]["autov3"] == autov3
