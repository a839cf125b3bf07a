"""The share-site protocol through the plugin manager: a disabled source plugin leaves its
refs with no source, ``NAME:REF`` picks a source, ``--source`` picks what search asks."""

from __future__ import annotations

import hashlib

import pytest
from fake_sites import FakeHub, Hosted

from hub.core.errors import ExitCode


@pytest.fixture
def pixel(site, models):
    return site.add(
        Hosted(101, 1001, 5001, models["kohya-sd1"].read_bytes(), "pixel.safetensors", "Pixel")
    )


def _without_civitai(hub, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(
        '[plugins]\ndisabled = ["civitai"]\n\n'
        '[sources.team]\ntype = "civitai"\nurl = "http://127.0.0.1:9"\n'
    )
    return config


@pytest.mark.parametrize(
    "ref",
    [
        "lora:pixel",
        "civitai:101@1001",
        "https://civitai.com/models/101?modelVersionId=1001",
        "sha256:" + "ab" * 32,
    ],
)
def test_disabled_civitai_plugin_leaves_civitai_refs_with_no_source(
    hub, site, pixel, ref, tmp_path
):
    config = _without_civitai(hub, tmp_path)
    result = hub("--config", config, "install", ref, "-y", ok=False)
    assert result.code == ExitCode.NOT_FOUND
    assert result.err.startswith(f"error: no source handles '{ref}'")
    assert "civitai" not in result.err.split("loaded:")[1].split(")")[0]  # nor [sources.team]
    assert "team" not in result.err.split("loaded:")[1].split(")")[0]
    assert "Traceback" not in result.err and site.api_requests == []
    assert not hub("--config", config, "list", "--json").json()


def test_disabled_civitai_plugin_has_nothing_to_search_or_identify(hub, site, tmp_path):
    config = _without_civitai(hub, tmp_path)
    search = hub("--config", config, "search", "pixel", "--remote", ok=False)
    assert search.code == ExitCode.NOT_FOUND and "no loaded source can search" in search.err
    named = hub("--config", config, "search", "x", "--source", "civitai", ok=False)
    assert named.code == ExitCode.NOT_FOUND and "no source named 'civitai'" in named.err
    assert hub("--config", config, "identify", ok=False).code == ExitCode.NOT_FOUND
    names = {r["name"] for r in hub("--config", config, "plugins", "--json").json()}
    assert "civitai" not in names and {"huggingface", "url"} <= names


def test_a_source_that_cannot_search_says_so(hub, site):
    result = hub("search", "pixel", "--source", "url", ok=False)
    assert result.code == ExitCode.USAGE
    assert "error: the source 'url' cannot search" in result.err


def test_search_source_names_each_item_and_its_cursor(hub, site, models):
    for i in range(3):
        site.add(
            Hosted(20 + i, 200 + i, 2000 + i, models["emb-sd1"].read_bytes(), f"{i}.pt", f"P{i}")
        )
    page = hub("search", "p", "--remote", "--source", "civitai", "--limit", "2", "--json").json()
    assert [(i["source"], i["ref"]) for i in page["items"]] == [
        ("civitai", "civitai:20"),
        ("civitai", "civitai:21"),
    ]
    assert page["cursors"] == {"civitai": page["next_cursor"]} and page["next_cursor"]


def test_named_source_prefix_picks_the_source(hub, site, pixel):
    art = hub("install", "civitai:lora:pixel", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == hashlib.sha256(pixel.data).hexdigest()
    assert art["source"]["site"] == "civitai" and art["source"]["model_id"] == 101
    url = f"{site.storage_origin}/files/1001"
    plan = hub("install", f"url:{url}", "--dry-run", "--json").json()
    assert plan["remote"]["source"] == "url" and plan["remote"]["url"] == url


def test_source_name_prefix_reaches_a_source_whose_refs_look_otherwise(hub, models):
    data = models["kohya-sdxl"].read_bytes()
    fake = FakeHub({"owner/repo/xl.safetensors": data})
    hub.env["HF_ENDPOINT"] = fake.endpoint
    try:
        plan = hub("install", "huggingface:owner/repo/xl.safetensors", "--dry-run", "--json")
    finally:
        fake.close()
    remote = plan.json()["remote"]
    assert (remote["source"], remote["size"]) == ("huggingface", len(data))
    assert remote["sha256"] == hashlib.sha256(data).hexdigest()
