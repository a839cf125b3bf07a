"""`hub install` against loopback imitations of Civitai (API + storage hosts) and the Hub."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from fake_sites import TOKEN, FakeHub, Hosted


def _sha(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _embedding(models, model_id: int, **kw) -> Hosted:
    """An sd1 embedding hosted as model ``model_id`` (version x10, file x100)."""
    return Hosted(
        model_id,
        model_id * 10,
        model_id * 100,
        models["emb-sd1"].read_bytes(),
        "e.safetensors",
        "E",
        "TextualInversion",
        **kw,
    )


@pytest.fixture
def pixel(site, models):
    return site.add(
        Hosted(
            101,
            1001,
            5001,
            models["kohya-sd1"].read_bytes(),
            "pixel_art_v1.safetensors",
            "Pixel Art",
        )
    )


def test_install_by_name_records_metadata_and_sidecars(hub, site, pixel):
    out = hub("install", "lora:pixel art", "--json").json()
    art = out["artifact"]
    assert out["status"] == "added"
    assert art["hashes"]["sha256"] == _sha(pixel.data)
    assert (art["kind"], art["base"], art["algo"]) == ("lora", "sd1", "lora")
    assert art["trained_words"] == ["pixel art"] and art["family"] == "SD 1.5"
    assert sorted(art["tags"]) == ["pixel", "style"]
    assert art["source"] == {
        "name": "civitai",
        "site": "civitai",
        "model_id": 101,
        "version_id": 1001,
        "file_id": 5001,
        "creator": "maker",
        "nsfw_level": 1,
    }
    assert art["description"] == "Crisp pixels"  # HTML reduced to text, script dropped
    path = Path(art["path"])
    assert path.parent == hub.home / "models" / "Lora"
    info = json.loads(path.with_name(path.stem + ".civitai.info").read_text())
    assert info["id"] == 1001 and info["modelId"] == 101
    user = json.loads(path.with_name(path.stem + ".json").read_text())
    assert user["activation text"] == "pixel art" and user["sd version"] == "SD1"
    assert path.with_name(path.stem + ".preview.png").read_bytes() == site.preview_png
    ua = site.api_requests[0]["headers"]["User-Agent"]
    assert ua.startswith("sd-hub/") and "Mozilla" not in ua
    search = [r for r in site.api_requests if r["path"].startswith("/api/v1/models?")][0]
    assert "types=LORA" in search["path"] and "types=LoCon" in search["path"]


@pytest.mark.parametrize("ref", ["civitai:101", "civitai:101@1001", "URL", "URL-version", "sha256"])
def test_install_by_id_version_url_and_hash(hub, site, pixel, ref):
    refs = {
        "URL": f"{site.origin}/models/101/pixel-art",
        "URL-version": f"{site.origin}/models/101/pixel-art?modelVersionId=1001",
        "sha256": f"sha256:{_sha(pixel.data)}",
    }
    art = hub("install", refs.get(ref, ref), "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(pixel.data)
    assert art["source"]["version_id"] == 1001


@pytest.mark.parametrize("how", ["name", "sha256", "download-url"])
def test_every_install_path_stores_the_models_metadata(hub, site, pixel, how):
    ref = {
        "name": "lora:pixel art",
        "sha256": f"sha256:{_sha(pixel.data)}",
        "download-url": f"{site.origin}/api/download/models/1001",
    }[how]
    art = hub("install", ref, "--json").json()["artifact"]
    assert sorted(art["tags"]) == ["pixel", "style"]
    assert art["description"] == "Crisp pixels"  # the model's, not the version's notes
    assert (art["source"]["creator"], art["source"]["nsfw_level"]) == ("maker", 1)
    assert art["trained_words"] == ["pixel art"] and art["family"] == "SD 1.5"


def test_newest_version_by_default_and_named_version(hub, site, models):
    site.add(
        Hosted(
            7,
            70,
            700,
            models["emb-sd1"].read_bytes(),
            "old.safetensors",
            "Hands",
            "TextualInversion",
            version_name="v1",
        )
    )
    site.add(
        Hosted(
            7,
            71,
            710,
            models["emb-sd2"].read_bytes(),
            "new.safetensors",
            "Hands",
            "TextualInversion",
            base_model="SD 2.1",
            version_name="v2",
        )
    )
    art = hub("install", "embedding:hands", "--json").json()["artifact"]
    assert art["source"]["version_id"] == 71 and art["base"] == "sd2"
    art = hub("install", "embedding:hands@v1", "--json").json()["artifact"]
    assert art["source"]["version_id"] == 70


def test_ambiguous_name_lists_choices_and_pick(hub, site, models):
    site.add(Hosted(1, 10, 100, models["kohya-sd1"].read_bytes(), "a.safetensors", "Pixel A"))
    site.add(Hosted(2, 20, 200, models["loha-sd1"].read_bytes(), "b.safetensors", "Pixel B"))
    result = hub("install", "lora:pixel", ok=False)
    assert result.code != 0 and "Pixel A" in result.err and "Pixel B" in result.err
    assert "--pick" in result.err
    art = hub("install", "lora:pixel", "--pick", "2", "--json").json()["artifact"]
    assert art["algo"] == "loha"


def test_cut_at_half_resumes_and_verifies(hub, site, models):
    big = models["mini-sd1"].read_bytes()
    hosted = site.add(
        Hosted(3, 30, 300, big, "mini.safetensors", "Mini", "Checkpoint", cut_at_half=1)
    )
    art = hub("install", "civitai:3", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(big)
    ranged = [r for r in site.storage_requests if "Range" in r["headers"]]
    assert ranged and ranged[0]["headers"]["If-Range"] == hosted.etag
    assert site.storage_bytes_sent <= 1.51 * len(big)


def test_kill_mid_download_then_resume(hub, site, models):
    data = models["mini-sdxl"].read_bytes()
    hosted = site.add(
        Hosted(
            4,
            40,
            400,
            data,
            "xl.safetensors",
            "XL",
            "Checkpoint",
            base_model="SDXL 1.0",
            throttle=0.002,
        )
    )
    hub.kill_when_partial(hub.popen("install", "civitai:4", "-y", "--quiet"), len(data) // 10)
    assert not list((hub.home / "models").glob("Stable-diffusion/*"))
    assert hub("list", "--json").json() == []
    hosted.throttle = 0
    sent_before = site.storage_bytes_sent
    art = hub("install", "civitai:4", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(data)
    assert (
        "Range"
        in site.storage_requests[
            -2 if site.storage_requests[-1]["path"].startswith("/preview") else -1
        ]["headers"]
    )
    assert site.storage_bytes_sent - sent_before < len(data)


def test_one_byte_corruption_is_refused(hub, site, models):
    site.add(_embedding(models, 5, corrupt=True))
    result = hub("install", "civitai:5", ok=False)
    assert result.code != 0 and "does not match" in result.err and "Traceback" not in result.err
    assert hub("list", "--json").json() == []
    assert not [
        p for p in (hub.home / "models").rglob("*") if p.is_file() and not p.name.endswith(".lock")
    ]


def test_login_required_says_token_needed(hub, site, models):
    site.add(_embedding(models, 6, login_required=True))
    result = hub("install", "civitai:6", ok=False)
    assert result.code != 0 and "token is needed" in result.err
    assert "CIVITAI_API_TOKEN" in result.err


def test_token_reaches_only_the_api_host_and_is_never_written(hub, site, models):
    site.add(_embedding(models, 6, login_required=True))
    hub.env["CIVITAI_API_TOKEN"] = TOKEN
    result = hub("install", "civitai:6", "--json")
    assert any(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in site.api_requests)
    for r in site.storage_requests:
        assert TOKEN not in json.dumps(r)
    assert TOKEN not in result.out + result.err
    for p in hub.home.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p


def test_429_is_retried(hub, site, pixel):
    site.api_429 = 1
    art = hub("install", "civitai:101", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(pixel.data)


def test_html_login_page_is_refused(hub, site, models):
    site.add(_embedding(models, 8, html_instead=True))
    result = hub("install", "civitai:8", ok=False)
    assert result.code != 0 and "text/html" in result.err
    assert hub("list", "--json").json() == []


@pytest.mark.parametrize(
    "name",
    [
        "../x.safetensors",
        "/etc/passwd",
        "con",
        "a\x00b.safetensors",
        "x" * 400 + ".safetensors",
        "..",
        ".hidden.safetensors",
    ],
)
def test_hostile_file_names_stay_in_the_store(hub, site, models, name):
    site.add(
        Hosted(9, 90, 900, models["emb-sd1"].read_bytes(), name, "Hostile", "TextualInversion")
    )
    art = hub("install", "civitai:9", "--json").json()["artifact"]
    path = Path(art["path"])
    assert path.parent == hub.home / "models" / "embeddings"
    assert len(path.name.encode()) <= 255 and "\x00" not in path.name
    assert path.name.split(".")[0].lower() != "con"


def test_dry_run_fetches_nothing(hub, site, pixel):
    out = hub("install", "lora:Pixel Art", "--dry-run", "--json").json()
    assert out["status"] == "planned" and out["remote"]["sha256"] == _sha(pixel.data).upper()
    assert site.storage_requests == [] and hub("list", "--json").json() == []


def test_two_processes_installing_the_same_file(hub, site, models):
    data = models["mini-sd1"].read_bytes()
    site.add(Hosted(11, 110, 1100, data, "same.safetensors", "Same", "Checkpoint"))
    procs = [hub.popen("install", "civitai:11", "-y", "--quiet") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert len(hub("list", "--json").json()) == 1
    assert len(list((hub.home / "models" / "Stable-diffusion").glob("*.safetensors"))) == 1


def test_hugging_face_file_is_verified(hub, models):
    data = models["kohya-sdxl"].read_bytes()
    fake = FakeHub({"owner/repo/loras/xl.safetensors": data})
    hub.env["HF_ENDPOINT"] = fake.endpoint
    try:
        art = hub("install", "hf:owner/repo/loras/xl.safetensors", "--json").json()["artifact"]
    finally:
        fake.close()
    assert art["hashes"]["sha256"] == _sha(data) and art["base"] == "sdxl"
    assert art["source"]["repo"] == "owner/repo"


def test_plain_url(hub, site, pixel):
    url = f"{site.storage_origin}/files/1001"
    art = hub("install", url, "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(pixel.data) and art["source"]["name"] == "url"


def test_search_remote_with_filters_and_cursor(hub, site, models):
    for i in range(3):
        site.add(
            Hosted(
                20 + i,
                200 + i,
                2000 + i,
                models["emb-sd1"].read_bytes(),
                f"p{i}.safetensors",
                f"Pixel {i}",
                "LORA",
                base_model="SDXL 1.0" if i == 2 else "SD 1.5",
            )
        )
    page = hub("search", "pixel", "--remote", "--limit", "2", "--json").json()
    assert [i["name"] for i in page["items"]] == ["Pixel 0", "Pixel 1"]
    assert page["next_cursor"]
    rest = hub(
        "search", "pixel", "--remote", "--limit", "2", "--cursor", page["next_cursor"], "--json"
    ).json()
    assert [i["name"] for i in rest["items"]] == ["Pixel 2"] and rest["next_cursor"] is None
    xl = hub("search", "pixel", "--remote", "--base", "sdxl", "--kind", "lora", "--json").json()
    assert [i["name"] for i in xl["items"]] == ["Pixel 2"] and xl["items"][0]["base"] == "sdxl"
    tagged = hub("search", "", "--remote", "--tag", "style", "--json").json()
    assert len(tagged["items"]) == 3
    assert any("baseModels=SDXL+1.0" in r["path"] for r in site.api_requests)


def test_identify_local_files_by_hash(hub, site, models, tmp_path):
    site.add(
        Hosted(
            30,
            300,
            3000,
            models["loha-sd1"].read_bytes(),
            "soft.safetensors",
            "Soft Watercolor",
            trained_words=["watercolor"],
        )
    )
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "mystery.safetensors").write_bytes(models["loha-sd1"].read_bytes())
    (folder / "other.safetensors").write_bytes(models["emb-sd2"].read_bytes())
    hub("scan", folder)
    report = hub("identify", "--json").json()
    assert [m["name"] for m in report["matched"]] == ["mystery"]
    assert report["unknown"] == [str(folder / "other.safetensors")]
    art = hub("show", "mystery", "--json").json()
    assert art["trained_words"] == ["watercolor"] and art["source"]["model_id"] == 30
    assert sorted(art["tags"]) == ["pixel", "style"] and art["source"]["creator"] == "maker"
    assert (folder / "mystery.civitai.info").is_file()
    posts = [r for r in site.api_requests if "body" in r]
    assert len(posts) == 1 and len(posts[0]["body"]) == 2  # one bulk request for both


def test_outdated_lists_newer_versions_of_the_same_family(hub, site, models):
    site.add(
        Hosted(
            40,
            400,
            4000,
            models["emb-sd1"].read_bytes(),
            "v1.safetensors",
            "Hands",
            "TextualInversion",
            version_name="v1",
        )
    )
    hub("install", "civitai:40@400")
    site.add(
        Hosted(
            40,
            401,
            4010,
            models["emb-sd2"].read_bytes(),
            "v2.safetensors",
            "Hands",
            "TextualInversion",
            version_name="v2-pony",
            base_model="Pony",
        )
    )
    assert hub("outdated", "--json").json()["outdated"] == []  # another family is no update
    site.add(
        Hosted(
            40,
            402,
            4020,
            models["kohya-sd1"].read_bytes(),
            "v3.safetensors",
            "Hands",
            "TextualInversion",
            version_name="v3",
        )
    )
    rows = hub("outdated", "--json").json()["outdated"]
    for row in rows:
        del row["id"], row["sha256"]
    assert rows == [
        {
            "name": "v1",
            "kind": "embedding",
            "installed": "v1",
            "newest": "v3",
            "published": "2021-02-06T00:00:00.000Z",  # version 402: day 402 after 2020-01-01
            "ref": "civitai:40@402",
            "family": "SD 1.5",
        }
    ]


def test_hugging_face_diffusers_folder(hub, tmp_path):
    from hub import minimodels as mm

    parts = mm.build_components("sd1")
    folder = tmp_path / "repo"
    for key, module in parts.items():
        module.save_pretrained(folder / key, safe_serialization=True)
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
            }
        )
    )
    (folder / "README.md").write_text("not fetched")
    files = {
        f"owner/mini-sd1/{p.relative_to(folder).as_posix()}": p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }
    fake = FakeHub(files)
    hub.env["HF_ENDPOINT"] = fake.endpoint
    try:
        art = hub("install", "hf:owner/mini-sd1", "--json").json()["artifact"]
    finally:
        fake.close()
    assert (art["kind"], art["format"], art["base"]) == ("checkpoint", "diffusers", "sd1")
    stored = Path(art["path"])
    for rel in (
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "vae/config.json",
        "model_index.json",
    ):
        assert (stored / rel).read_bytes() == (folder / rel).read_bytes(), rel
    assert not (stored / "README.md").exists()


def test_changed_etag_restarts_the_download(hub, site, models):
    data = models["mini-sd1"].read_bytes()
    hosted = site.add(
        Hosted(12, 120, 1200, data, "m.safetensors", "M", "Checkpoint", throttle=0.002)
    )
    hub.kill_when_partial(hub.popen("install", "civitai:12", "-y", "--quiet"), len(data) // 10)
    hosted.throttle = 0
    hosted.etag = '"changed"'  # same published hash, but the object's ETag changed
    before = len(site.storage_requests)
    sent_before = site.storage_bytes_sent
    art = hub("install", "civitai:12", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(data)
    resumed = [r for r in site.storage_requests[before:] if r["path"].startswith("/files/")]
    assert resumed[0]["headers"].get("If-Range")  # it asked to resume with the old ETag...
    assert site.storage_bytes_sent - sent_before >= len(data)  # ...and got the whole file


def test_redirect_to_another_scheme_is_refused(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hub.core.download import DownloadError, Http

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header(
                "Location", "file:///etc/passwd" if "file" in self.path else self.path
            )  # a loop otherwise
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(DownloadError, match="only https"):
            Http().download(f"{base}/file", tmp_path / "x.part", None, None)
        with pytest.raises(DownloadError, match="too many redirects"):
            Http().download(f"{base}/loop", tmp_path / "y.part", None, None)
    finally:
        server.shutdown()


def test_world_readable_token_file_is_refused(hub, site, pixel, tmp_path):
    token = tmp_path / "civitai.token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    hub.env["HUB_CIVITAI_TOKEN_FILE"] = str(token)
    result = hub("install", "civitai:101", ok=False)
    assert result.code != 0 and "readable by others" in result.err and TOKEN not in result.err
    token.chmod(0o600)
    hub("install", "civitai:101")


def test_pickle_download_is_converted_with_its_hash_in_lineage(hub, site, tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "old.pt"
    vec = torch.randn(2, 768)
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vec.clone())}),
            "name": "old",
            "step": 1,
        },
        ckpt,
    )
    site.add(
        Hosted(
            13,
            130,
            1300,
            ckpt.read_bytes(),
            "old.pt",
            "Old",
            "TextualInversion",
            fmt="PickleTensor",
        )
    )
    refused = hub("install", "civitai:13", ok=False)  # a pickle asks first; no TTY here
    assert refused.code != 0 and "pickle" in refused.err and "-y" in refused.err
    out = hub("install", "civitai:13", "-y", "--json").json()
    art = out["artifact"]
    assert (art["format"], art["kind"], art["layout"]) == ("safetensors", "embedding", "a1111")
    assert torch.equal(load_file(art["path"])["emb_params"], vec)
    lineage = hub("show", art["hashes"]["xxh3_128"], "--json").json()["lineage"]
    assert lineage[0]["parent_sha256"] == _sha(ckpt)


def test_endless_503_gives_up_after_a_bounded_number_of_tries(hub, site, pixel):
    site.api_503 = True
    result = hub("install", "lora:pixel art", ok=False)
    assert result.code != 0 and "HTTP 503" in result.err and "Traceback" not in result.err
    assert len(site.api_requests) == 6  # the first try and five retries


def test_a_full_disk_is_one_clear_error(hub, site, models, tmp_path):
    import subprocess

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(tiny)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    try:
        hub.home = tiny / "home"
        hub.env["HUB_HOME"] = str(hub.home)
        site.add(
            Hosted(
                14,
                140,
                1400,
                models["mini-sd1"].read_bytes(),
                "big.safetensors",
                "Big",
                "Checkpoint",
            )
        )
        result = hub("install", "civitai:14", "-y", ok=False)
        assert result.code != 0 and "not enough disk space" in result.err
        assert "Traceback" not in result.err
        assert hub("list", "--json").json() == []
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


def test_autov3_in_the_download_pass_only_for_add_ons(hub, site, pixel, models):
    """The header, which arrives first, decides: the LoRA gets AutoV3 while it streams; the
    checkpoint gets it (equal to hashlib over the bytes after the header) when asked."""

    def autov3(data: bytes) -> str:
        (n,) = struct.unpack("<Q", data[:8])
        return hashlib.sha256(data[8 + n :]).hexdigest()

    ckpt = site.add(
        Hosted(202, 2002, 6002, models["mini-sd1"].read_bytes(), "mini.safetensors", "Mini")
    )  # listed as a LoRA: the file's header says checkpoint, and the file wins
    lora = hub("install", f"{site.storage_origin}/files/1001", "--json").json()["artifact"]
    assert lora["hashes"]["autov3"] == autov3(pixel.data)
    art = hub("install", f"{site.storage_origin}/files/2002", "-y", "--json").json()["artifact"]
    assert art["kind"] == "checkpoint" and art["hashes"]["autov3"] is None
    shown = hub("show", f"autov3:{autov3(ckpt.data)[:12]}", "--json").json()
    assert shown["id"] == art["id"] and shown["hashes"]["autov3"] == autov3(ckpt.data)
