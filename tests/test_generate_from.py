"""``hub generate --from IMAGE`` from other tools' images: files resolved by hash, version id
or name through the image readers, the missing ones installed from the loopback share site
after one confirmation, parameters sd-hub cannot honour listed, ``--set`` on top. Expected
values are computed here by hand (hashlib, the graph's numbers)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import minimodels as tm
import pytest
import torch
from fake_sites import Hosted
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from hub import __version__


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def autov3(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()


def png(path: Path, chunks: dict[str, str]) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), "white").save(path, pnginfo=info)
    return path


CHECKPOINT = tm.mini_checkpoint("sd1", dtype=torch.float32)


@pytest.fixture
def mini(hub):
    """A fresh home holding the mini sd1 checkpoint as ``mini``."""
    hub("import", str(CHECKPOINT), "--name", "mini")
    return hub


def registry(hub) -> list[tuple[str, str]]:
    return sorted((a["name"], a["hashes"]["sha256"]) for a in hub("list", "--json").json())


def civitai_image(tmp_path: Path) -> Path:
    text = (
        "a castle\nNegative prompt: blurry\n"
        f"Steps: 3, Sampler: Euler a, CFG scale: 5, Seed: 3, Size: 64x64, "
        f"Model hash: {sha(CHECKPOINT)[:10]}, Model: mini, Denoising strength: 0.5, "
        "Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent, "
        'Civitai resources: [{"type":"lora","modelVersionId":1001,"modelName":"Pixel Art",'
        '"weight":0.6}], Version: v1.10.1'
    )
    return png(tmp_path / "civitai.png", {"parameters": text})


def test_civitai_resources_are_installed_by_version_id_after_one_confirmation(mini, site, tmp_path):
    lora = tm.kohya_lora("sd1")
    data = lora.read_bytes()
    site.add(Hosted(101, 1001, 5001, data, "pixel_art_v1.safetensors", "Pixel Art"))
    image = civitai_image(tmp_path)
    before = registry(mini)

    # --dry-run: the plan lists the file to install and what is ignored; nothing is fetched
    [plan] = mini("generate", "--from", str(image), "--dry-run", "--json").json()
    [todo] = plan["from"]["install"]
    assert (todo["kind"], todo["version_id"], todo["resolution"]["install"]) == (
        "lora",
        1001,
        "civitai:101@1001",
    )
    assert todo["resolution"]["remote"]["sha256"].lower() == hashlib.sha256(data).hexdigest()
    assert plan["from"]["ignored"] == [
        "Denoising strength: 0.5",
        "Hires upscale: 2",
        "Hires steps: 4",
        "Hires upscaler: Latent",
    ]
    assert plan["job"]["model"] == f"sha256:{sha(CHECKPOINT)}"
    assert registry(mini) == before and site.storage_requests == []

    # no -y and no terminal to ask on: one line, nothing installed
    refused = mini("generate", "--from", str(image), ok=False, input="")
    errors = [line for line in refused.err.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors == [
        f"error: {image}: 1 missing file(s) to install: confirmation needed",
        "hint: pass -y to install them",
    ]
    assert "Traceback" not in refused.err and registry(mini) == before

    # --offline asks nobody: the LoRA is then simply not found
    asked = len(site.api_requests)
    offline = mini("generate", "--from", str(image), "--offline", "--dry-run", ok=False)
    assert len(site.api_requests) == asked
    assert "lora Pixel Art (version 1001) is not in the registry" in offline.err

    # -y: installed through the verified install path, then generated; --set wins
    out = tmp_path / "out.png"
    ran = mini("generate", "--from", str(image), "-y", "--set", "steps=1", "-o", str(out))
    assert "ignored: Hires upscale: 2" in ran.err
    rows = {a["name"]: a for a in mini("list", "--json").json()}
    [new] = [a for a in rows.values() if a["kind"] == "lora"]
    assert new["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    with Image.open(out) as img:
        record = json.loads(img.text["sd-hub"])
        params = img.text["parameters"]
    [applied] = record["loras"]
    assert (applied["sha256"], applied["te"], applied["unet"]) == (
        hashlib.sha256(data).hexdigest(),
        0.6,
        0.6,
    )
    assert record["settings"] | {"seed": 3} == {
        "steps": 1,
        "cfg": 5.0,
        "sampler": "Euler a",
        "schedule": "Automatic",
        "seed": 3,
        "width": 64,
        "height": 64,
        "clip_skip": 1,
    }
    assert params.startswith(f"a castle <lora:{new['name']}:0.6>\nNegative prompt: blurry\n")
    assert sum(1 for r in site.storage_requests if "/files/1001/" in r["path"]) >= 1


def comfy_graph(lora_name: str) -> dict:
    """A ComfyUI API graph: checkpoint -> LoRA (model 0.7, clip 0.4) -> KSampler, the text
    encoders behind CLIPSetLastLayer -2, and a hires-fix second pass."""
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "SD15\\mini.safetensors"},
        },
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": lora_name,
                "strength_model": 0.7,
                "strength_clip": 0.4,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "11": {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 11,
                "steps": 2,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "12": {
            "class_type": "LatentUpscaleBy",
            "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["3", 0]},
        },
        "13": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 11,
                "steps": 2,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 0.5,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["12", 0],
            },
        },
    }


def test_comfyui_graph_resolves_by_file_names_and_generates_with_its_settings(mini, tmp_path):
    lora = tm.kohya_lora("sd1")
    mini("import", str(lora), "--name", "style")
    image = png(
        tmp_path / "comfy.png", {"prompt": json.dumps(comfy_graph("loras/style.safetensors"))}
    )

    [plan] = mini(
        "generate", "--from", str(image), "--set", "steps=1", "--dry-run", "--json"
    ).json()
    assert plan["settings"]["steps"] == 1  # --set wins over the graph's 2
    assert plan["from"]["ignored"] == ["other samplers: ['13']"]  # the hires-fix pass
    assert plan["loras"] == [
        {"name": "style", "kind": "lora", "sha256": sha(lora), "te": 0.4, "unet": 0.7}
    ]

    out = tmp_path / "out.png"
    mini("generate", "--from", str(image), "-o", str(out))
    with Image.open(out) as img:
        params = img.text["parameters"]
    expected = (
        "a castle <lora:style:0.4:0.7>\nNegative prompt: blurry\n"
        "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 11, "
        f"Size: 64x64, Model hash: {sha(CHECKPOINT)[:10]}, Model: mini, Clip skip: 2, "
        f'Lora hashes: "style: {autov3(lora)[:12]}", Version: sd-hub {__version__}'
    )
    assert params == expected


def test_an_ambiguous_comfyui_name_is_an_error_listing_the_candidates(mini, tmp_path):
    mini("import", str(tm.lycoris_lora("sd1", "locon")), "--name", "dup")
    mini("import", str(tm.lycoris_lora("sd1", "lokr")), "--name", "Dup")
    image = png(tmp_path / "amb.png", {"prompt": json.dumps(comfy_graph("dup.safetensors"))})
    result = mini("generate", "--from", str(image), "--dry-run", "--offline", ok=False)
    [error] = [line for line in result.err.splitlines() if line.startswith("error:")]
    locon, lokr = (sha(tm.lycoris_lora("sd1", algo))[:10] for algo in ("locon", "lokr"))
    assert error == (
        f"error: {image}: cannot re-run it: lora dup.safetensors is ambiguous: "
        f"lora:Dup ({lokr}), lora:dup ({locon})"
    )


def test_set_refuses_unknown_keys_and_bad_values(mini, tmp_path):
    image = civitai_image(tmp_path)
    for item, message in (
        ("colour=red", "error: --set colour=red: not KEY=VALUE with a known key"),
        ("steps=many", "error: --set steps=many: 'many' is not a whole number"),
    ):
        result = mini("generate", "--from", str(image), "--offline", "--set", item, ok=False)
        assert result.err.splitlines()[0] == message


def test_an_8_hex_model_hash_is_autov1_never_a_sha256_prefix(mini, tmp_path):
    data = CHECKPOINT.read_bytes()
    v1 = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    for given, found in ((v1, True), (sha(CHECKPOINT)[:8], False)):
        text = f"a castle\nSteps: 2, Seed: 1, Size: 64x64, Model hash: {given}, Model: gone"
        image = png(tmp_path / f"{given}.png", {"parameters": text})
        result = mini(
            "generate", "--from", str(image), "--offline", "--dry-run", "--json", ok=found
        )
        if found:
            assert result.json()[0]["model"]["sha256"] == sha(CHECKPOINT)
        else:
            assert f"checkpoint gone (autov1 {given}) is not in the registry" in result.err


def test_an_sd_hub_record_pins_every_file_by_sha256(mini, tmp_path):
    first = tm.hypernetwork("sd1")
    mini("import", str(first), "--name", "anime")
    out = tmp_path / "out.png"
    mini(
        "generate",
        "a castle <hypernet:anime:0.5>",
        "--model",
        "mini",
        "--steps",
        "1",
        "-W",
        "64",
        "-H",
        "64",
        "--seed",
        "5",
        "-o",
        str(out),
    )
    [held] = [h for name, h in registry(mini) if name == "anime"]  # converted from a pickle
    mini("import", str(tm.hypernetwork("sd1", seed=7)), "--name", "Anime")  # the name: ambiguous
    [found] = mini("inspect", str(out), "--json", "--offline").json()
    assert found["record"]["reader"] == "sd-hub"
    [plan] = mini("generate", "--from", str(out), "--dry-run", "--json", "--offline").json()
    assert plan["hypernetworks"] == [
        {"name": "anime", "kind": "hypernetwork", "sha256": held, "strength": 0.5}
    ]
    assert plan["model"]["sha256"] == sha(CHECKPOINT)
    with Image.open(out) as img:  # the A1111 text alone names the hypernetwork by name only
        bare = png(tmp_path / "bare.png", {"parameters": img.text["parameters"]})
    result = mini("generate", "--from", str(bare), "--dry-run", "--offline", ok=False)
    assert "hypernetwork anime is ambiguous" in result.err


def test_invokeai_and_novelai_images_give_their_settings(mini, tmp_path):
    lora = tm.kohya_lora("sd1")
    mini("import", str(lora), "--name", "style")
    invoke = {
        "positive_prompt": "a castle",
        "negative_prompt": "blurry",
        "steps": 2,
        "cfg_scale": 6,
        "seed": 9,
        "width": 64,
        "height": 64,
        "scheduler": "dpmpp_2m_k",
        "model": {"model_name": "mini", "base_model": "sd-1", "model_type": "main"},
        "loras": [{"lora": {"model_name": "style", "base_model": "sd-1"}, "weight": 0.75}],
        "hrf_enabled": True,
        "app_version": "3.6.2",
    }
    image = png(tmp_path / "invoke.png", {"invokeai_metadata": json.dumps(invoke)})
    [plan] = mini("generate", "--from", str(image), "--dry-run", "--json", "--offline").json()
    assert (plan["model"]["sha256"], plan["prompt"], plan["negative"]) == (
        sha(CHECKPOINT),
        "a castle",
        "blurry",
    )
    assert plan["loras"] == [
        {"name": "style", "kind": "lora", "sha256": sha(lora), "te": 0.75, "unet": 0.75}
    ]
    assert plan["settings"] == {
        "steps": 2,
        "cfg": 6.0,
        "sampler": "DPM++ 2M",
        "schedule": "Karras",
        "seed": 9,
        "size": [64, 64],
        "clip_skip": 1,
    }
    assert plan["from"]["ignored"] == ["hrf_enabled: True"]

    comment = {"steps": 2, "scale": 5, "seed": 4, "sampler": "k_euler_ancestral", "uc": "ugly"}
    comment |= {"width": 64, "height": 64, "strength": 0.7, "noise": 0.2}
    chunks = {"Software": "NovelAI", "Description": "a castle", "Comment": json.dumps(comment)}
    image = png(tmp_path / "nai.png", chunks)
    refused = mini("generate", "--from", str(image), "--dry-run", ok=False)
    assert f"error: {image}: the NovelAI image names no checkpoint file\n" in refused.err
    [plan] = mini(
        "generate", "--from", str(image), "--set", "model=mini", "--dry-run", "--json"
    ).json()
    assert (plan["model"]["name"], plan["negative"], plan["settings"]["sampler"]) == (
        "mini",
        "ugly",
        "Euler a",
    )
    assert plan["from"]["ignored"] == ["strength: 0.7", "noise: 0.2"]


def test_lora_tags_resolve_to_the_civitai_resources_files_they_name(mini, site, tmp_path):
    """``<lora:NAME>`` tags with no hash and no file of that name: before the install one
    goes with its version by the file name on the site, the other is the one tag and entry
    left (after it too, installed as ink_v2); each file installed and applied once."""
    pixel, ink = tm.kohya_lora("sd1", seed=11), tm.kohya_lora("sd1", seed=12)
    site.add(Hosted(101, 1001, 5001, pixel.read_bytes(), "pixel_art_v1.safetensors", "Pixel Art"))
    site.add(Hosted(102, 1002, 5002, ink.read_bytes(), "ink_v2.safetensors", "Ink Wash"))
    text = (
        "a castle <lora:pixel_art_v1:0.6> <lora:my ink:0.4:0.3>\n"
        f"Steps: 1, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, "
        f"Model hash: {sha(CHECKPOINT)[:10]}, "
        'Civitai resources: [{"type":"lora","modelVersionId":1002,"modelName":"Ink Wash",'
        '"weight":0.3}, {"type":"lora","modelVersionId":1001,"modelName":"Pixel Art",'
        '"weight":0.6}]'
    )
    image = png(tmp_path / "tags.png", {"parameters": text})
    [plan] = mini("generate", "--from", str(image), "--dry-run", "--json").json()
    installs = sorted(f["resolution"]["install"] for f in plan["from"]["install"])
    assert installs == ["civitai:101@1001", "civitai:102@1002"]  # each file once

    out = tmp_path / "out.png"
    mini("generate", "--from", str(image), "-y", "-o", str(out))
    names = {a["hashes"]["sha256"]: a["name"] for a in mini("list", "--json").json()}
    assert names[sha(ink)] == "ink_v2"  # not the tag's name
    with Image.open(out) as img:
        record = json.loads(img.text["sd-hub"])
    applied = sorted((a["sha256"], a["te"], a["unet"], a["tag"]) for a in record["loras"])
    assert applied == sorted(
        [(sha(pixel), 0.6, 0.6, "pixel_art_v1"), (sha(ink), 0.4, 0.3, "my ink")]
    )
    [found] = mini("inspect", str(image), "--json", "--offline").json()
    how = {r["name"]: r["resolution"] for r in found["record"]["resources"]}
    assert (how["pixel_art_v1"]["status"], how["my ink"]["status"]) == ("held", "held")
    assert how["my ink"]["artifact"]["sha256"] == sha(ink)
    assert how["my ink"]["note"] == "<lora:my ink> is version 1002 of Civitai resources"
