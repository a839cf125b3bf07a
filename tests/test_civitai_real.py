"""The Civitai client against real Civitai answers (tests/realdata/civitai, provenance there),
served as they are by the loopback imitation; where a download is needed, the bytes are mini
models built by diffusers/peft and the answer's hashes, sizeKB and downloadUrl are rewritten to
match them (an integer sizeKB stays an integer, empty hashes stay empty)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from fake_sites import FakeSite, Hosted

from hub.core.errors import HubError
from hub.plugins.builtin.civitai import CivitaiSource, choose_file
from hub.plugins.sourcing import Choice

REAL = Path(__file__).parent / "realdata" / "civitai"
WEIGHT_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def real(part: str) -> dict:
    (path,) = [p for p in REAL.glob("*.json") if part in p.name]
    return json.loads(path.read_text(encoding="utf-8"))


def real_model(model_id: int) -> dict:
    for path in REAL.glob("*.json"):
        answer = json.loads(path.read_text(encoding="utf-8"))
        for item in answer.get("items", [answer]):
            if item.get("id") == model_id and "modelVersions" in item:
                return item
    raise KeyError(model_id)


def version_of(model: dict, version_id: int) -> dict:
    return next(v for v in model["modelVersions"] if v["id"] == version_id)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("img_001.txt", "1girl, eyes")
    return buf.getvalue()


def _pickled_embedding() -> bytes:
    import torch

    buf = io.BytesIO()
    vec = torch.arange(2 * 768, dtype=torch.float32).reshape(2, 768) / 1000
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": vec},
            "name": "ulzzang-6500",
            "step": 6500,
        },
        buf,
    )
    return buf.getvalue()


def _file_requests(site: FakeSite) -> list[str]:
    """The storage requests for model files (previews left out)."""
    return [r["path"] for r in site.storage_requests if r["path"].startswith("/files/")]


# -- 9: only model files, in model formats ----------------------------------------------------


def test_a_lora_beside_its_training_data_zip_installs_the_lora_only(hub, site, models):
    lora = models["kohya-sd1"].read_bytes()
    site.serve_real(real_model(5529), {6665: lora, 6800: _zip()})
    art = hub("install", "civitai:5529", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(lora) and (art["kind"], art["algo"]) == ("lora", "lora")
    assert [r.split("?")[0] for r in _file_requests(site)] == ["/files/6433/6665"]


@pytest.mark.parametrize(
    "version_id, what",
    [
        (303662, "dreamshaper_8Diffusers.zip (Model, Diffusers)"),
        (111861, "dreamshaper_7Diffusers_trainingData.zip (Training Data, Other)"),
    ],
)
def test_a_version_with_only_a_zip_says_so_and_fetches_nothing(hub, site, version_id, what):
    model = real_model(4384)
    file_id = version_of(model, version_id)["files"][0]["id"]
    site.serve_real(model, {file_id: _zip()})
    result = hub("install", f"civitai:4384@{version_id}", "-y", ok=False)
    assert result.code != 0 and "Traceback" not in result.err
    assert "has no model file to install" in result.err and what in result.err
    assert _file_requests(site) == []
    assert hub("list", "--json").json() == []


def _chosen(model_id: int, version_id: int, choice: Choice = Choice(), kind=None) -> str:
    files = version_of(real_model(model_id), version_id)["files"]
    return choose_file(files, choice, kind)["name"]


def test_choose_file_on_real_versions():
    # a checkpoint version: config yaml first, the model, then a VAE
    assert _chosen(67095, 71723, kind="checkpoint") == "waifuDiffusion15Beta2_v10.safetensors"
    assert _chosen(67095, 71723, Choice(file_type="vae"), "checkpoint") == "kl-f8-anime2.ckpt"
    # a LoRA with a pickle, a safetensors and a text-encoder file
    assert _chosen(3679, 4062, kind="lora") == "badvhs_v1.safetensors"
    assert _chosen(3679, 4062, Choice(file_type="Text Encoder"), "lora") == "badvhs_v1_txt.pt"
    # an embedding whose only file is typed Negative: an embedding was asked for
    assert _chosen(56519, 60938, kind="embedding") == "negative_hand-neg.pt"
    with pytest.raises(HubError, match="no model file.*negative_hand-neg.pt \\(Negative"):
        _chosen(56519, 60938, kind="lora")
    with pytest.raises(HubError, match="no VAE file.*badvhs_v1.pt"):
        _chosen(3679, 4062, Choice(file_type="VAE"), "lora")


def test_file_type_installs_the_vae_of_a_checkpoint_version(hub, site, models):
    vae = models["vae"].read_bytes()
    site.serve_real(real_model(67095), {49883: vae})
    art = hub("install", "civitai:67095", "--file-type", "VAE", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(vae) and art["kind"] == "vae"
    assert art["source"]["file_id"] == 49883


# -- 10: sizeKB is approximate -------------------------------------------------------------


def test_an_integer_size_kb_installs_and_identifies(hub, site, models, tmp_path):
    data = models["mini-sd1"].read_bytes()
    assert round(len(data) / 1024) * 1024 != len(data)  # the rounded size is not the size
    model = site.serve_real(real_model(1102), {194: data})
    assert isinstance(version_of(model, 1292)["files"][1]["sizeKB"], int)
    art = hub("install", "civitai:1102@1292", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(data) and art["source"]["file_id"] == 194
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "synth.safetensors").write_bytes(data)
    hub("rm", art["hashes"]["sha256"][:12], "-y")
    hub("scan", folder)
    report = hub("identify", "--json").json()
    assert [m["name"] for m in report["matched"]] == ["synth"] and report["notes"] == []
    assert hub("show", "synth", "--json").json()["source"]["version_id"] == 1292


# -- 11: no published hash; pickles by their bytes ---------------------------------------------


def test_a_file_without_hashes_asks_and_is_recorded_unverified(hub, site, models):
    lora = models["kohya-sd1"].read_bytes()
    site.serve_real(real_model(65283), {77161: lora})
    refused = hub("install", "civitai:65283@75024", ok=False)
    assert refused.code != 0 and "cannot be verified" in refused.err and "-y" in refused.err
    assert _file_requests(site) == [] and hub("list", "--json").json() == []
    art = hub("install", "civitai:65283@75024", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(lora)
    assert art["source"]["verified"] is False
    assert hub("show", art["name"], "--json").json()["source"]["verified"] is False


def test_a_bin_of_format_other_asks_as_a_pickle(hub, site):
    from safetensors.torch import load_file

    data = _pickled_embedding()
    page = real("models_search_types-TextualInversion")
    site.serve_real(next(m for m in page["items"] if m["id"] == 8109), {9682: data})
    refused = hub("install", "civitai:8109@10107", ok=False)
    assert refused.code != 0 and "pickle" in refused.err and "-y" in refused.err
    assert _file_requests(site) == []
    art = hub("install", "civitai:8109@10107", "-y", "--json").json()["artifact"]
    assert (art["format"], art["kind"]) == ("safetensors", "embedding")
    assert load_file(art["path"])["emb_params"].shape == (2, 768)


def test_pickle_bytes_under_a_safetensors_label_ask(hub, site):
    data = _pickled_embedding()
    site.add(Hosted(15, 150, 1500, data, "neat.safetensors", "Neat", "TextualInversion"))
    refused = hub("install", "civitai:15", ok=False)
    assert refused.code != 0 and "pickle" in refused.err and "-y" in refused.err
    assert hub("list", "--json").json() == []
    assert not [p for p in (hub.home / "models").rglob("*.part") if p.is_file()]
    art = hub("install", "civitai:15", "-y", "--json").json()["artifact"]
    assert art["format"] == "safetensors" and art["kind"] == "embedding"


# -- 12: the site's hosts; types filtered afterwards -----------------------------------------


@pytest.fixture
def pixel(site, models):
    return site.add(
        Hosted(101, 1001, 5001, models["kohya-sd1"].read_bytes(), "p.safetensors", "Pixel Art")
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://civitai.com/models/101/pixel-art",
        "https://www.civitai.com/models/101?modelVersionId=1001",
        "https://api.civitai.com/api/download/models/1001",
        "https://civitai.green/models/101/pixel-art",
        "https://civitai.red/models/101",
    ],
)
def test_urls_on_the_sites_hosts_are_civitai_refs(hub, site, pixel, url):
    plan = hub("install", url, "--dry-run", "--json").json()["remote"]
    assert (plan["source"], plan["name"], plan["version"]) == ("civitai", "Pixel Art", "v1.0")


def test_download_url_hosts_are_followed_and_get_the_token(tmp_path):
    from hub.core.config import Settings

    source = CivitaiSource(Settings(tmp_path, civitai_token="tok"), origin="https://civitai.com")
    model = real_model(43331)  # a search item whose downloadUrls use api.civitai.com
    version = {**version_of(model, 176425), "modelId": 43331}
    sha = version["files"][0]["hashes"]["SHA256"]
    remote = source.remote_for_version(version, sha, model)
    assert remote.url == "https://api.civitai.com/api/download/models/176425"
    assert source.http.sends_token_to(remote.url)
    storage = "https://civitai-delivery-worker-prod.abc.r2.cloudflarestorage.com/x"
    assert not source.http.sends_token_to(storage)
    assert not source.http.sends_token_to("https://image.civitai.com/x.jpeg")


def test_search_results_are_filtered_by_type_when_the_site_ignores_it(hub, site, models):
    site.types_ignored_with_query = True
    site.add(
        Hosted(
            60,
            600,
            6000,
            models["mini-sd1"].read_bytes(),
            "c.safetensors",
            "Pixel Art",
            "Checkpoint",
        )
    )
    result = hub("install", "lora:pixel art", "-y", ok=False)
    assert result.code != 0 and "nothing on Civitai matches lora:pixel art" in result.err
    assert hub("list", "--json").json() == []
    assert hub("search", "pixel", "--remote", "--kind", "lora", "--json").json()["items"] == []
    site.add(Hosted(61, 610, 6100, models["kohya-sd1"].read_bytes(), "l.safetensors", "Pixel Art"))
    art = hub("install", "lora:pixel art", "--json").json()["artifact"]
    assert (art["kind"], art["source"]["model_id"]) == ("lora", 61)


# -- 13: every real answer goes through the client's parsing ---------------------------------


MODEL_TYPES = {"Model", "Pruned Model"}
KINDS = {
    "LORA": "lora",
    "TextualInversion": "embedding",
    "Hypernetwork": "hypernetwork",
    "Checkpoint": "checkpoint",
}


def _expected_files(model: dict, version: dict) -> list[dict]:
    types = MODEL_TYPES | ({"Negative"} if model["type"] == "TextualInversion" else set())
    return [
        f
        for f in version.get("files") or []
        if f["type"] in types
        and (f.get("metadata") or {}).get("format") in (None, "SafeTensor", "PickleTensor", "Other")
        and f["name"].lower().endswith(WEIGHT_EXTS)
    ]


def _check_model(source: CivitaiSource, model: dict) -> list[str]:
    """Resolve every version; the refs of those without a model file to install."""
    none = []
    tags = [t if isinstance(t, str) else t["name"] for t in model.get("tags") or []]
    for version in model["modelVersions"]:
        expected = _expected_files(model, version)
        ref = f"civitai:{model['id']}@{version['id']}"
        if not expected:
            with pytest.raises(HubError) as err:
                source.resolve(ref, Choice())
            assert "\n" not in str(err.value) and str(version["id"]) in str(err.value), ref
            none.append(ref)
            continue
        remote = source.resolve(ref, Choice())
        file = next(f for f in expected if f["id"] == remote.ids["file_id"])
        assert remote.filename == file["name"], ref
        if any((f.get("metadata") or {}).get("format") == "SafeTensor" for f in expected):
            assert file["metadata"]["format"] == "SafeTensor", ref
        assert remote.sha256 == ((file.get("hashes") or {}).get("SHA256") or None), ref
        assert abs(remote.size - file["sizeKB"] * 1024) <= 1024, ref
        assert remote.kind == KINDS[model["type"]] and remote.tags == tags, ref
        assert remote.ids["creator"] == model["creator"]["username"], ref
        assert remote.ids["version_id"] == version["id"] == remote.site_json["id"], ref
        assert remote.family == version["baseModel"] and remote.version == version["name"], ref
        assert remote.pickle == ((file.get("metadata") or {}).get("format") != "SafeTensor"), ref
    return none


def test_every_real_answer_parses(ctx):
    site = FakeSite()
    try:
        source = CivitaiSource(ctx.settings, origin=site.origin)
        none: list[str] = []
        for path in sorted(REAL.glob("*.json")):
            answer = json.loads(path.read_text(encoding="utf-8"))
            if "items" in answer:  # a search page
                site.real_search = answer
                page = source.search("", None, None, None, 10, None)
                items, cursor = page.items, page.next_cursor
                assert [i["ref"] for i in items] == [f"civitai:{m['id']}" for m in answer["items"]]
                assert [i["name"] for i in items] == [m["name"] for m in answer["items"]]
                assert cursor == answer["metadata"].get("nextCursor"), path.name
                models = answer["items"]
            elif "modelVersions" in answer:
                models = [answer]
            else:  # a version: what by-hash and identify parse
                sha = answer["files"][0]["hashes"]["SHA256"]
                remote = source.remote_for_version(answer, sha)
                assert (remote.name, remote.kind) == (answer["model"]["name"], "checkpoint")
                assert remote.filename == answer["files"][0]["name"] and remote.pickle
                continue
            for model in models:
                site.serve_real(model)
                none += _check_model(source, model)
        # an archived model (no files); DreamShaper's diffusers versions: one zipped folder
        # typed Model/Diffusers, four zipped folders typed Training Data
        assert sorted(none) == sorted(
            [
                "civitai:20865@70932",
                "civitai:20865@52866",
                "civitai:20865@24838",
                "civitai:4384@303662",
                "civitai:4384@111861",
                "civitai:4384@96894",
                "civitai:4384@85362",
                "civitai:4384@74772",
            ]
        )
    finally:
        site.close()
