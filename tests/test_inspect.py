"""Reading generation metadata from images: every real file of realdata/infotext and
realdata/comfy, images written here in each container and text layout the tools use, a
third-party reader, and hostile metadata. Expected values are read off the files by hand."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from hub import hookimpl, plugins
from hub.images import read_image
from hub.plugins.imaging import ImageRecord

REAL = Path(__file__).parent / "realdata"  # copies of shared/realdata, with provenance


@pytest.fixture
def readers():
    plugins.reset_plugins()
    yield {n: r.value for n, r in plugins.collect("register_image_readers").items()}
    plugins.reset_plugins()


def png(path: Path, chunks: dict[str, str], zipped: bool = False) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value, zip=zipped)
    Image.new("RGB", (8, 8), "white").save(path, pnginfo=info)
    return path


def with_exif(path: Path, exif: Image.Exif, **save) -> Path:
    Image.new("RGB", (8, 8), "white").save(path, exif=exif, **save)
    return path


def user_comment(raw: bytes, big_endian: bool = True) -> Image.Exif:
    """An EXIF block holding ``raw`` as UserComment in the Exif IFD (as piexif writes it)."""
    exif = Image.Exif()
    exif.endian = ">" if big_endian else "<"
    exif.get_ifd(0x8769)[0x9286] = raw
    return exif


def record(path: Path, readers) -> ImageRecord:
    found = read_image(path, readers)
    assert found.record is not None, found.answers
    return found.record


def res(rec: ImageRecord, kind: str, name: str | None = None):
    """The one resource of ``kind`` (and ``name``) as a plain tuple."""
    hits = [r for r in rec.resources if r.kind == kind and (name is None or r.name == name)]
    assert len(hits) == 1, rec.resources
    r = hits[0]
    return (r.name, r.hashes, r.strength, r.clip_strength, r.version_id)


def settings(rec: ImageRecord):
    return (
        rec.tool,
        rec.sampler,
        rec.scheduler,
        rec.steps,
        rec.cfg,
        rec.seed,
        rec.width,
        rec.height,
        rec.clip_skip,
    )


# -- realdata/infotext: every file ---------------------------------------------------------

COUNTERFEIT = ("counterfeitV30_v30", {"autov2": "cbfba64e66"}, None, None, None)
ANIME_VAE = ("kl-f8-anime2.ckpt", {"autov2": "df3c506e51"}, None, None, None)
KARRAS = ("DPM++ 2M", "Karras")

INFOTEXT = {
    "a1111_1.8.0-RC_blank_line_before_negative.reeell.txt": dict(
        prompt="1girl, 8k, high quality, standing, hooded jacket",
        negative="gun, nsfw",
        settings=("A1111", *KARRAS, 30, 7.0, 829413060, 512, 512, None),
        version="1.8.0-RC",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={},
        extra={"Denoising strength": "0.4", "ADetailer version": "24.3.2", "Mask blur": "4"},
    ),
    "a1111_1.8.0-RC_blank_line_before_settings.reeell.txt": dict(
        prompt="Digital painting of A young woman with light yellow dress sitting next to a "
        "brick window reading a book by Stanley Artgerm Lau, artstation, 8k, extremely "
        "detailed, ornate, cinematic lighting, vivid",
        negative=None,
        settings=("A1111", *KARRAS, 20, 7.0, 4073734043, 512, 512, None),
        version="1.8.0-RC",
        checkpoint=("v1-5-pruned-emaonly", {"autov2": "6ce0161689"}, None, None, None),
        vae=None,
        loras={},
        extra={},
    ),
    "a1111_1.8.0-RC_lora_hashes.reeell.txt": dict(
        prompt="(masterpiece:1.2), best quality,PIXIV, 1cat, <lora:cat_20230627113759:0.8>",
        negative=None,
        settings=("A1111", *KARRAS, 30, 7.0, 3433407908, 512, 512, None),
        version="1.8.0-RC",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={"cat_20230627113759": ({"autov3": "939a01b898c5"}, 0.8, 0.8)},
        extra={},
    ),
    "a1111_1.8.0-RC_prompt_is_only_lora_tag.reeell.txt": dict(
        prompt="<lora:techpunkmask_v0.5:1>",
        negative=None,
        settings=("A1111", *KARRAS, 30, 7.0, 2287343379, 512, 512, None),
        version="1.8.0-RC",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={"techpunkmask_v0.5": ({"autov3": "5d7ac23a7437"}, 1.0, 1.0)},
        extra={"ADetailer model": "face_yolov8n.pt", "ADetailer version": "24.4.0"},
    ),
    "a1111_docstring_old_8char_model_hash.a1111.txt": dict(
        prompt="girl with an artist's beret, determined, blue eyes, desert scene, computer "
        "monitors, heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), "
        "(coquettish), detailed, intricate",
        negative="ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, "
        "disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly "
        "drawn hands), messy drawing",
        settings=("A1111", "Euler a", None, 20, 7.0, 965400086, 512, 512, None),
        version=None,
        checkpoint=(None, {"autov1": "45dee52b"}, None, None, None),
        vae=None,
        loras={},
        extra={},
    ),
    "a1111_unknownver_basic.sdparsers.txt": dict(
        prompt="photo of a duck",
        negative="monochrome",
        settings=("A1111", "UniPC", None, 15, 5.0, 235284042, 512, 400, None),
        version=None,
        checkpoint=(
            "realistic_realisticVisionV20_v20",
            {"autov2": "c0d1994c73"},
            None,
            None,
            None,
        ),
        vae=None,
        loras={},
        extra={},
    ),
    "a1111_v1.6.0_style_selector_vae_hash.stabilitymatrix.txt": dict(
        prompt="test123",
        negative="test, easy negative",
        settings=("A1111", "Euler a", None, 20, 7.0, 3589107295, 1024, 1028, None),
        version="1.6.0",
        checkpoint=("nightvisionXL_v0770_BakedVAE", {"autov2": "9aa0c3e54d"}, None, None, None),
        vae=("sdxl_vae.safetensors", {"autov2": "235745af8d"}, None, None, None),
        loras={},
        extra={
            "Style Selector Enabled": "True",
            "Style Selector Randomize": "False",
            "Style Selector Style": "base",
        },
    ),
    "a1111_v1.8.0_adetailer_controlnet.bbeaekk.txt": dict(
        prompt="lineart, white background, masterpiece, extremely detailed thick line "
        "drawing, 1girl, hoodie, animal gloves, skirt, sneakers",
        negative=None,
        settings=("A1111", *KARRAS, 20, 7.0, 1280110377, 512, 512, None),
        version="v1.8.0",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={},
        extra={
            "ControlNet 0": "Module: scribble_pidinet, Model: control_v11p_sd15_scribble "
            "[d4ba51ff], Weight: 1, Resize Mode: Resize and Fill, Low Vram: False, Processor "
            "Res: 512, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control "
            "Mode: Balanced, Hr Option: Both, Save Detected Map: True",
            "ADetailer inpaint padding": "32",
            "Masked area padding": "32",
        },
    ),
    "a1111_v1.8.0_inpaint_fields.bbeaekk.txt": dict(
        prompt="blonde hair, blue eyes,",
        negative="worst quality, low quality, normal quality, unclear architectural outline, "
        "duplicate, missing_body, (missing_face:1.4), (missing_eyes:1.4), nsfw",
        settings=("A1111", *KARRAS, 20, 7.0, 745144264, 512, 512, None),
        version="v1.8.0",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={},
        extra={"Denoising strength": "0.75", "Inpaint area": "Only masked"},
    ),
    "a1111_v1.8.0_no_prompt_settings_only.bbeaekk.txt": dict(
        prompt="",
        negative=None,
        settings=("A1111", *KARRAS, 20, 7.0, 3322447488, 512, 512, None),
        version="v1.8.0",
        checkpoint=("manmaruMix_v30", {"autov2": "2d34a470c1"}, None, None, None),
        vae=ANIME_VAE,
        loras={},
        extra={"ADetailer confidence": "0.3"},
    ),
    "a1111_v1.8.0_two_lora_tags_one_lora_hash.bbeaekk.txt": dict(
        prompt=None,  # long; checked by its ends below
        negative=None,
        settings=("A1111", *KARRAS, 20, 7.0, 737931450, 512, 512, None),
        version="v1.8.0",
        checkpoint=COUNTERFEIT,
        vae=ANIME_VAE,
        loras={
            "techpunkmask_v0.5-000001": ({}, 0.7, 0.7),
            "techpunkmask_v0.5": ({"autov3": "5d7ac23a7437"}, 1.0, 1.0),
        },
        extra={"Mask blur": "4"},
    ),
    "civitai_generator_single_line_no_newlines.loramanager.txt": dict(
        prompt="Negative space, fog, BLACK blue color GRADIENT BACKGROUND, a vintage car in "
        "the middle, FOG, and a silhouetted figure near the car, in the style of the Blade "
        "Runner movie",
        negative=None,
        settings=("Civitai", "Undefined", None, 23, 3.5, 1760020955, 832, 1216, 2),
        version=None,
        checkpoint=("Z Image", {}, None, None, 2442439),
        vae=None,
        loras={},
        extra={"Created Date": "2025-11-28T09:18:43.5269343Z", "Civitai metadata": {}},
    ),
}


@pytest.mark.parametrize("name", sorted(INFOTEXT))
def test_every_real_infotext_reads_into_the_right_fields(name, readers, tmp_path):
    want = INFOTEXT[name]
    text = (REAL / "infotext" / name).read_text(encoding="utf-8")
    rec = record(png(tmp_path / "i.png", {"parameters": text}), readers)
    assert rec.reader == "a1111"
    assert settings(rec) == want["settings"]
    assert rec.version == want["version"]
    if want["prompt"] is not None:
        assert (rec.prompt, rec.negative) == (want["prompt"], want["negative"])
    assert res(rec, "checkpoint") == want["checkpoint"]
    if want["vae"]:
        assert res(rec, "vae") == want["vae"]
    else:
        assert not [r for r in rec.resources if r.kind == "vae"]
    loras = [(r.name, (r.hashes, r.strength, r.clip_strength)) for r in rec.resources]
    assert dict(loras[: len(want["loras"])]) == want["loras"]  # tags first, in prompt order
    assert len([r for r in rec.resources if r.kind == "lora"]) == len(want["loras"])
    for key, value in want["extra"].items():
        assert rec.extra[key] == value
    for known in ("Steps", "Sampler", "Seed", "Size", "Model hash", "Lora hashes", "Version"):
        assert known not in rec.extra


def test_two_lora_tags_prompt_keeps_both_tags_and_ends(readers, tmp_path):
    name = "a1111_v1.8.0_two_lora_tags_one_lora_hash.bbeaekk.txt"
    text = (REAL / "infotext" / name).read_text(encoding="utf-8")
    rec = record(png(tmp_path / "i.png", {"parameters": text}), readers)
    assert rec.prompt.startswith("masterpiece, realistic, 1 woman, (wearing a purple")
    assert rec.prompt.endswith(
        "iso 1000<lora:techpunkmask_v0.5-000001:0.7> <lora:techpunkmask_v0.5:1>"
    )
    assert rec.negative.startswith("paintings, sketches, (worst quality:2)")
    assert rec.negative.endswith("signature, (mole:1.4), watermark")


def test_fooocus_json_parameters(readers, tmp_path):
    text = (REAL / "infotext" / "fooocus_v2.4.3_parameters_is_json.sdparsers.txt").read_text()
    rec = record(png(tmp_path / "f.png", {"parameters": text}), readers)
    assert rec.reader == "fooocus" and rec.version == "v2.4.3"
    assert settings(rec) == (
        "Fooocus",
        "dpmpp_2m_sde_gpu",
        "karras",
        30,
        4.0,
        6952411511246973023,  # a string in the file; exact as an int
        768,
        1280,
        2,
    )
    assert (rec.prompt, rec.negative) == ("a smiling goldfish", None)
    assert res(rec, "checkpoint") == (
        "juggernautXL_v8Rundiffusion",
        {"autov2": "aeb7e9e689"},
        None,
        None,
        None,
    )
    assert [r.kind for r in rec.resources] == ["checkpoint"]  # "vae": "Default (model)"
    assert rec.extra["styles"] == "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']"
    assert rec.extra["performance"] == "Speed" and rec.extra["sharpness"] == 2
    assert rec.extra["full_prompt"][0].startswith("cinematic still a smiling goldfish")


# -- realdata/comfy: every graph, from `prompt` and from `workflow` alone --------------------

COMFY = {
    "lora_multiple": dict(
        prompt="masterpiece best quality girl",
        negative="bad hands",
        settings=("ComfyUI", "euler", "normal", 20, 8.0, 513173432917412, 512, 512, None),
        checkpoint="v1-5-pruned-emaonly.ckpt",
        loras=[  # applied in this order: node 11 feeds node 10
            ("theovercomer8sContrastFix_sd15.safetensors", 1.0, 1.0),
            ("epiNoiseoffset_v2.safetensors", 1.0, 1.0),
        ],
        vae=None,
        extra={},
    ),
    "flux_depth_lora": dict(
        prompt="a photograph of a shark in the sea",  # via FluxGuidance and InstructPixToPix
        negative="",
        settings=("ComfyUI", "euler", "normal", 20, 1.0, 91050358797301, None, None, None),
        checkpoint="flux1-dev.safetensors",  # a UNETLoader
        loras=[("flux1-depth-dev-lora.safetensors", 1.0, None)],  # LoraLoaderModelOnly
        vae="ae.safetensors",
        extra={"guidance": 10.0},
    ),
    "lcm_sdxl_lora": dict(
        prompt="evening sunset scenery blue sky nature, glass bottle with a galaxy in it",
        negative="text, watermark",
        settings=("ComfyUI", "lcm", "sgm_uniform", 5, 1.8, 167055194337639, 1024, 1024, None),
        checkpoint="sd_xl_1.0.safetensors",
        loras=[("lcm_lora_sdxl.safetensors", 1.0, 1.0)],  # behind ModelSamplingDiscrete
        vae=None,
        extra={},
    ),
}


@pytest.mark.parametrize("chunks", ["prompt+workflow", "workflow"])
@pytest.mark.parametrize("name", sorted(COMFY))
def test_every_real_comfyui_graph_reads_into_the_right_fields(name, chunks, readers, tmp_path):
    want = COMFY[name]
    base = REAL / "comfy" / f"comfyui_examples_{name}"
    text = {k: (base.parent / f"{base.name}.{k}.json").read_text() for k in chunks.split("+")}
    rec = record(png(tmp_path / "c.png", text), readers)
    assert rec.reader == "comfyui"
    assert settings(rec) == want["settings"]
    assert (rec.prompt, rec.negative) == (want["prompt"], want["negative"])
    assert res(rec, "checkpoint")[0] == want["checkpoint"]
    loras = [(r.name, r.strength, r.clip_strength) for r in rec.resources if r.kind == "lora"]
    assert loras == want["loras"]
    vaes = [r.name for r in rec.resources if r.kind == "vae"]
    assert vaes == ([want["vae"]] if want["vae"] else [])
    for key, value in want["extra"].items():
        assert rec.extra[key] == value


# -- containers: PNG chunks, JPEG and WebP EXIF UserComment, XMP ----------------------------

FULL = (
    "a lighthouse at dusk, <lora:oilpaint_v2:0.7>, 灯台 🌅\n"
    "dramatic sky, <hypernet:ink:0.5>\n"
    "Negative prompt: blurry, lowres, <lora:noisy:-1:0.5>\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
    "Size: 832x1216, Model hash: 1a2b3c4d5e, Model: myMix_v3, VAE hash: 0a1b2c3d4e, "
    "VAE: vae-ft-mse.safetensors, Clip skip: 2, Denoising strength: 0.4, Hires upscale: 1.5, "
    'Hires upscaler: Latent, Lora hashes: "oilpaint_v2: 0123456789ab, noisy: 00112233aabb", '
    'TI hashes: "badhand: ba9876543210", Hashes: {"model": "1a2b3c4d5e", "embed:badhand": '
    '"ffeeddccbb", "lora:oilpaint_v2": "5e4d3c2b1a"}, Tiled Diffusion: {"Method": '
    '"MultiDiffusion", "Tile width": 96}, ADetailer model: face_yolov8n.pt, Seed: 7654321, '
    "Created Date: 2026-02-25T22:09:08Z, Some-new/key: x, Version: v1.10.1"
)


def assert_full(rec: ImageRecord) -> None:
    """Every field of FULL, as written above."""
    assert rec.reader == "a1111"
    assert settings(rec) == ("Civitai", "DPM++ 2M", "Karras", 28, 6.5, 7654321, 832, 1216, 2)
    assert rec.version == "v1.10.1"
    assert (
        rec.prompt
        == "a lighthouse at dusk, <lora:oilpaint_v2:0.7>, 灯台 🌅\ndramatic sky, <hypernet:ink:0.5>"
    )
    assert rec.negative == "blurry, lowres, <lora:noisy:-1:0.5>"
    assert res(rec, "checkpoint") == ("myMix_v3", {"autov2": "1a2b3c4d5e"}, None, None, None)
    assert res(rec, "vae") == ("vae-ft-mse.safetensors", {"autov2": "0a1b2c3d4e"}, None, None, None)
    # the tag, `Lora hashes` (12 hex: AutoV3) and `Hashes` (10 hex: AutoV2) are one add-on
    assert res(rec, "lora", "oilpaint_v2") == (
        "oilpaint_v2",
        {"autov3": "0123456789ab", "autov2": "5e4d3c2b1a"},
        0.7,
        0.7,
        None,
    )
    assert res(rec, "lora", "noisy") == ("noisy", {"autov3": "00112233aabb"}, 0.5, -1.0, None)
    assert res(rec, "hypernetwork") == ("ink", {}, 0.5, None, None)
    assert res(rec, "embedding") == (
        "badhand",
        {"sha256_12": "ba9876543210", "autov2": "ffeeddccbb"},
        None,
        None,
        None,
    )
    assert rec.extra["Tiled Diffusion"] == {"Method": "MultiDiffusion", "Tile width": 96}
    assert rec.extra["Seed (first)"] == "1234567"  # the key came twice: last wins
    assert rec.extra["Created Date"] == "2026-02-25T22:09:08Z"
    assert rec.extra["Some-new/key"] == "x"
    assert rec.extra["Hires upscale"] == "1.5" and rec.extra["ADetailer model"] == "face_yolov8n.pt"
    assert "Hashes" not in rec.extra and "Lora hashes" not in rec.extra


def test_png_text_chunks_tEXt_zTXt_iTXt(readers, tmp_path):
    latin = FULL.replace("灯台 🌅", "phare")
    rec = record(png(tmp_path / "t.png", {"parameters": latin}), readers)
    assert rec.prompt.startswith("a lighthouse at dusk, <lora:oilpaint_v2:0.7>, phare\n")
    assert_full(record(png(tmp_path / "i.png", {"parameters": FULL}), readers))  # iTXt
    assert_full(record(png(tmp_path / "z.png", {"parameters": FULL}, zipped=True), readers))
    assert b"iTXt" in (tmp_path / "i.png").read_bytes()
    assert b"zTXt" in png(tmp_path / "zl.png", {"parameters": latin}, zipped=True).read_bytes()
    assert record(tmp_path / "zl.png", readers).prompt == rec.prompt


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
@pytest.mark.parametrize(
    "prefix,encoding,big_endian_tiff",
    [
        (b"UNICODE\0", "utf-16-be", True),  # A1111, Forge, SD.Next (piexif)
        (b"UNICODE\0", "utf-16-le", False),  # SwarmUI (ImageSharp), some Civitai images
        (b"UNICODE\0", "utf-16-be", False),  # BE text in an LE TIFF block
        (b"UNICODE\0", "utf-16", True),  # with a BOM
        (b"ASCII\0\0\0", "utf-8", True),
    ],
)
def test_exif_user_comment(suffix, prefix, encoding, big_endian_tiff, readers, tmp_path):
    raw = prefix + FULL.encode(encoding)
    path = with_exif(tmp_path / f"e{suffix}", user_comment(raw, big_endian_tiff))
    assert_full(record(path, readers))


def test_xmp_user_comment(readers, tmp_path):
    from html import escape

    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        '22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/">'
        '<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">'
        + escape(FULL)
        + "</rdf:li></rdf:Alt></exif:UserComment></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    path = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(path, xmp=xmp.encode())
    assert_full(record(path, readers))


def test_comfyui_webp_exif_and_fooocus_jpeg_exif(readers, tmp_path):
    base = REAL / "comfy" / "comfyui_examples_lora_multiple"
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + (base.parent / f"{base.name}.prompt.json").read_text()
    exif[0x010F] = "workflow:" + (base.parent / f"{base.name}.workflow.json").read_text()
    rec = record(with_exif(tmp_path / "c.webp", exif), readers)
    assert rec.reader == "comfyui" and rec.seed == 513173432917412 and "workflow" not in rec.notes
    fooocus = Image.Exif()  # Fooocus: plain text tags in IFD0 (Pillow's Image.Exif)
    fooocus[0x9286] = (
        REAL / "infotext" / "fooocus_v2.4.3_parameters_is_json.sdparsers.txt"
    ).read_text()
    fooocus[0x927C] = "fooocus"
    fooocus[0x0131] = "Fooocus v2.4.3"
    rec = record(with_exif(tmp_path / "f.jpg", fooocus), readers)
    assert (rec.reader, rec.seed, rec.width) == ("fooocus", 6952411511246973023, 768)


def test_invokeai_and_novelai(readers, tmp_path):
    meta = {
        "generation_mode": "txt2img",
        "positive_prompt": "a cat",
        "negative_prompt": "dog",
        "width": 512,
        "height": 768,
        "seed": 42,
        "steps": 30,
        "cfg_scale": 7.5,
        "scheduler": "euler",
        "clip_skip": 0,
        "model": {"key": "u1", "hash": "blake3:" + "ab" * 32, "name": "mix", "base": "sd-1"},
        "vae": {"key": "u2", "hash": "sha256:" + "cd" * 32, "name": "vae-mse"},
        "loras": [
            {"model": {"key": "u3", "hash": "blake3:" + "ef" * 32, "name": "ink"}, "weight": 0.75}
        ],
        "app_version": "5.6.0",
        "hrf_enabled": False,
    }
    rec = record(png(tmp_path / "i.png", {"invokeai_metadata": json.dumps(meta)}), readers)
    assert settings(rec) == ("InvokeAI", None, "euler", 30, 7.5, 42, 512, 768, 0)
    assert (rec.prompt, rec.negative, rec.version) == ("a cat", "dog", "5.6.0")
    assert res(rec, "checkpoint") == ("mix", {"blake3": "ab" * 32}, None, None, None)
    assert res(rec, "vae") == ("vae-mse", {"sha256": "cd" * 32}, None, None, None)
    assert res(rec, "lora") == ("ink", {"blake3": "ef" * 32}, 0.75, None, None)
    assert rec.extra == {"generation_mode": "txt2img", "hrf_enabled": False}
    comment = {
        "uc": "lowres",
        "steps": 28,
        "scale": 5.0,
        "seed": 99,
        "sampler": "k_euler_ancestral",
        "width": 832,
        "height": 1216,
        "noise_schedule": "karras",
    }
    chunks = {
        "Software": "NovelAI",
        "Description": "1girl, smile",
        "Source": "NovelAI Diffusion V4 4F49EC75",
        "Comment": json.dumps(comment),
    }
    rec = record(png(tmp_path / "n.png", chunks), readers)
    assert settings(rec) == ("NovelAI", "k_euler_ancestral", None, 28, 5.0, 99, 832, 1216, None)
    assert (rec.prompt, rec.negative, rec.resources) == ("1girl, smile", "lowres", [])
    assert rec.extra == {"noise_schedule": "karras", "Source": "NovelAI Diffusion V4 4F49EC75"}


def test_a_third_party_reader_registers_through_the_plugin_manager(readers, tmp_path):
    from hub.plugins.imaging import Declined

    class MyTool:
        @hookimpl
        def register_image_readers(self, register):
            def read(meta):
                if "mytool" not in meta.text:
                    return Declined("mytool", "no 'mytool' chunk")
                data = json.loads(meta.text["mytool"])
                return ImageRecord("mytool", "MyTool", prompt=data["p"], steps=data["n"], score=90)

            register("mytool", read)

    plugins.add_plugin(MyTool(), name="mytool-plugin")
    mine = {n: r.value for n, r in plugins.collect("register_image_readers").items()}
    assert plugins.collect("register_image_readers")["mytool"].plugin == "mytool-plugin"
    path = png(tmp_path / "m.png", {"mytool": '{"p": "hello", "n": 9}', "parameters": FULL})
    found = read_image(path, mine)
    assert (found.record.tool, found.record.prompt, found.record.steps) == ("MyTool", "hello", 9)
    answers = {a["reader"]: a for a in found.answers}
    assert (
        answers["a1111"]["matched"]
        and answers["comfyui"]["reason"] == "no 'prompt' or 'workflow' chunk"
    )
    other = read_image(png(tmp_path / "o.png", {"parameters": FULL}), mine)
    assert other.record.reader == "a1111"
    assert {"reader": "mytool", "matched": False, "reason": "no 'mytool' chunk"} in other.answers


# -- hostile metadata: a note or a one-line error, never a hang or a traceback ---------------


def test_huge_text_chunks_are_skipped_with_a_note(readers, tmp_path):
    big = "Steps: 1, " * (1 << 20)  # 10 MB
    found = read_image(png(tmp_path / "t.png", {"parameters": big, "Software": "x"}), readers)
    assert found.record is None
    assert found.notes == ["'tEXt chunk' is 10.0 MB, over 4.0 MB: skipped"]
    bomb = read_image(png(tmp_path / "z.png", {"parameters": "\0" * (50 << 20)}, True), readers)
    assert bomb.record is None and bomb.notes == ["'parameters' inflates to over 4.0 MB: skipped"]


def test_deeply_nested_json_is_read_as_text_or_ignored(readers, tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    text = f"a cat\nSteps: 20, Hashes: {deep}, Seed: 5, Size: 64x64"
    rec = record(png(tmp_path / "a.png", {"parameters": text}), readers)
    assert (rec.steps, rec.seed, rec.width) == (20, 5, 64)
    assert rec.extra["Hashes"].startswith("[[[")  # kept as text, not parsed
    found = read_image(png(tmp_path / "c.png", {"prompt": deep, "workflow": deep}), readers)
    assert found.record is None
    comfy = next(a for a in found.answers if a["reader"] == "comfyui")
    assert "'prompt' is not readable JSON (RecursionError)" in comfy["reason"]


def test_a_graph_with_a_cycle_is_read_up_to_the_loop(readers, tmp_path):
    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 2,
                "cfg": 3.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["3", 0],
            },
        },
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "a.safetensors",
                "strength_model": 0.5,
                "strength_clip": 0.25,
                "model": ["11", 0],
                "clip": ["11", 1],
            },
        },
        "11": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "b.safetensors",
                "strength_model": 1.0,
                "strength_clip": 1.0,
                "model": ["10", 0],
                "clip": ["10", 1],
            },
        },
        "6": {"class_type": "ConditioningCombine", "inputs": {"conditioning": ["6", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ["7", 0], "clip": ["10", 1]}},
    }
    rec = record(png(tmp_path / "g.png", {"prompt": json.dumps(graph)}), readers)
    assert (rec.steps, rec.prompt, rec.negative) == (2, None, None)
    assert [r.name for r in rec.resources if r.kind == "lora"] == ["b.safetensors", "a.safetensors"]
    assert "the graph loops back to node 10: walk stopped" in rec.notes
    assert "the graph loops back to node 6: walk stopped" in rec.notes
    chain = {
        str(i): {"class_type": "ModelSamplingDiscrete", "inputs": {"model": [str(i + 1), 0]}}
        for i in range(1, 1000)
    }
    chain["0"] = {"class_type": "KSampler", "inputs": {"steps": 5, "model": ["1", 0]}}
    rec = record(png(tmp_path / "l.png", {"prompt": json.dumps(chain)}), readers)
    assert rec.steps == 5 and rec.notes == ["a chain of over 200 nodes: walk stopped"]


@pytest.mark.parametrize(
    "raw",
    [
        b"UNICODE\0" + b"\x00a\xd8\x00\x00b",  # a lone surrogate
        b"UNICODE\0" + b"\x00S\x00t\x00",  # odd length
    ],
)
def test_invalid_utf16_user_comment_is_skipped(raw, readers, tmp_path):
    found = read_image(with_exif(tmp_path / "e.jpg", user_comment(raw)), readers)
    assert found.record is None
    assert len(found.notes) == 1 and found.notes[0].startswith("'UserComment': not valid UTF-16")


def test_damaged_files(readers, tmp_path):
    from hub.core.errors import InvalidFileError

    path = png(tmp_path / "p.png", {"parameters": FULL})
    data = path.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: data.index(b"iTXt") + 20])  # the chunk ends early
    found = read_image(cut, readers)
    assert found.record is None
    assert found.notes == ["damaged PNG: the iTXt chunk is cut short"]
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InvalidFileError) as err:
        read_image(junk, readers)
    assert str(junk) in err.value.message and "not a readable image" in err.value.message


# -- resolution against the registry ----------------------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def autov3(path: Path) -> str:
    """SHA-256 of a safetensors file's bytes after its 8-byte length and JSON header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()


def autov1(path: Path) -> str:
    """SHA-256 of the 0x10000 bytes at offset 0x100000, first 8 hex (FORMATS.md §8)."""
    data = path.read_bytes()
    return hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    import minimodels as tm

    return {
        "mix": tm.mini_checkpoint("sd1"),
        "style": tm.kohya_lora("sd1"),
        "soft": tm.lycoris_lora("sd1", "loha"),
        "shiny": tm.embedding("sd1"),
        "mse": tm.vae_file(),
        "dup": tm.lycoris_lora("sd1", "locon"),
        "Dup": tm.lycoris_lora("sd1", "lokr"),
    }


@pytest.fixture(scope="module")
def registry(files, tmp_path_factory) -> Path:
    """A home where every file of ``files`` is registered by ``hub import`` under its key."""
    from conftest import HubRunner

    root = tmp_path_factory.mktemp("inspect")
    runner = HubRunner(root / "home", root)
    for name, path in files.items():
        runner("import", str(path), "--name", name)
    return root / "home"


@pytest.fixture
def inspect_in(registry, monkeypatch):
    from hub.context import Context
    from hub.images import inspect_image

    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    plugins.reset_plugins()
    ctx = Context.load(home=str(registry))
    yield lambda path: inspect_image(ctx, path)
    ctx.db.dispose()
    plugins.reset_plugins()


def statuses(found) -> dict[tuple[str, str | None], tuple[str, str | None, str | None]]:
    """(kind, name) -> (status, matched by, registered name)."""
    return {
        (r.kind, r.name): (how.status, how.by, how.artifact["name"] if how.artifact else None)
        for r, how in zip(found.record.resources, found.resolutions, strict=True)
    }


def a1111_text(files: dict[str, Path], model_hash: str) -> str:
    return (
        "a castle <lora:style:0.8> <lora:soft:0.5:0.25>, shiny\nNegative prompt: blurry\n"
        f"Steps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, "
        f"Model hash: {model_hash}, Model: renamed, VAE hash: {sha(files['mse'])[:10]}, "
        f'Lora hashes: "style: {autov3(files["style"])[:12]}", '
        f'TI hashes: "shiny: {sha(files["shiny"])[:12]}", '
        f'Hashes: {{"lora:soft": "{sha(files["soft"])[:10]}"}}, Version: v1.10.1'
    )


def test_a1111_hashes_resolve_to_registered_files(files, inspect_in, tmp_path):
    text = a1111_text(files, sha(files["mix"])[:10])
    found = inspect_in(png(tmp_path / "a.png", {"parameters": text}))
    assert statuses(found) == {
        ("checkpoint", "renamed"): ("held", "autov2", "mix"),  # by hash, not by its name
        ("vae", None): ("held", "autov2", "mse"),
        ("lora", "style"): ("held", "autov3", "style"),  # `Lora hashes`: 12 hex of AutoV3
        ("lora", "soft"): ("held", "autov2", "soft"),  # `Hashes` JSON: 10 hex of SHA-256
        ("embedding", "shiny"): ("held", "sha256_12", "shiny"),  # `TI hashes`
    }
    held = {
        r.name: how.artifact
        for r, how in zip(found.record.resources, found.resolutions, strict=True)
    }
    assert held["style"]["sha256"] == sha(files["style"])


def test_autov1_resolves_only_against_autov1(files, inspect_in, tmp_path):
    old = inspect_in(
        png(tmp_path / "o.png", {"parameters": a1111_text(files, autov1(files["mix"]))})
    )
    assert statuses(old)[("checkpoint", "renamed")] == ("held", "autov1", "mix")
    for fake in (sha(files["mix"])[:8], autov3(files["style"])[:10], sha(files["style"])[:12]):
        found = inspect_in(png(tmp_path / "f.png", {"parameters": a1111_text(files, fake)}))
        how = found.resolutions[[r.kind for r in found.record.resources].index("checkpoint")]
        assert how.status == "unknown", fake  # a prefix of another hash never matches


def test_comfyui_loras_by_name_with_strengths_and_an_ambiguous_name(inspect_in, tmp_path):
    def lora(name, model, strength, clip=None):
        inputs = {"lora_name": name, "strength_model": strength, "model": [model, 0]}
        if clip is None:
            return {"class_type": "LoraLoaderModelOnly", "inputs": inputs}
        return {
            "class_type": "LoraLoader",
            "inputs": inputs | {"strength_clip": clip, "clip": [model, 1]},
        }

    graph = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "SD15/mix.safetensors"},
        },
        "20": lora("dup.safetensors", "11", 0.3),  # model-only, last in the chain
        "10": lora("style.safetensors", "4", 0.8, 0.6),
        "11": lora("styles\\soft.safetensors", "10", 1.0, 0.5),
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 96, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["12", 0]}},
        "12": {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"stop_at_clip_layer": -2, "clip": ["11", 1]},
        },
        "3": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "add_noise": "enable",
                "noise_seed": 11,
                "steps": 4,
                "cfg": 5.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "model": ["20", 0],
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
                "start_at_step": 0,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        },
    }
    found = inspect_in(png(tmp_path / "c.png", {"prompt": json.dumps(graph)}))
    rec = found.record
    assert settings(rec) == ("ComfyUI", "dpmpp_2m", "karras", 4, 5.5, 11, 64, 96, 2)
    loras = [(r.name, r.strength, r.clip_strength) for r in rec.resources if r.kind == "lora"]
    assert loras == [
        ("style.safetensors", 0.8, 0.6),
        ("styles\\soft.safetensors", 1.0, 0.5),
        ("dup.safetensors", 0.3, None),
    ]
    assert statuses(found) == {
        ("checkpoint", "SD15/mix.safetensors"): ("held", "name", "mix"),
        ("lora", "style.safetensors"): ("held", "name", "style"),
        ("lora", "styles\\soft.safetensors"): ("held", "name", "soft"),
        ("lora", "dup.safetensors"): ("ambiguous", "name", None),
    }
    dup = found.resolutions[-1]
    assert len(dup.candidates) == 2 and all(c.startswith("lora:") for c in dup.candidates)
    assert {c.split()[0] for c in dup.candidates} == {"lora:dup", "lora:Dup"}


def test_a_hash_that_matches_nothing_falls_back_to_the_name_with_a_note(inspect_in, tmp_path):
    text = 'x <lora:style:1>\nSteps: 3, Seed: 1, Lora hashes: "style: 00000000abcd", Model: mix'
    found = inspect_in(png(tmp_path / "n.png", {"parameters": text}))
    assert statuses(found) == {
        ("lora", "style"): ("held", "name", "style"),
        ("checkpoint", "mix"): ("held", "name", "mix"),
    }
    assert found.resolutions[0].note == (
        "the image gives autov3 00000000abcd; the registered file's hash differs"
    )
    assert found.resolutions[1].note is None


# -- `hub inspect` --------------------------------------------------------------------------


def test_cli_inspect_json_keeps_unknown_fields_and_resolutions(registry, files, tmp_path):
    from conftest import HubRunner

    runner = HubRunner(registry, tmp_path)
    image = png(tmp_path / "a.png", {"parameters": a1111_text(files, sha(files["mix"])[:10])})
    full = png(tmp_path / "full.png", {"parameters": FULL})
    [one, two] = runner("inspect", str(image), str(full), "--json", "--offline").json()
    assert one["record"]["tool"] == "A1111" and one["record"]["seed"] == 1
    by_name = {r["name"]: r for r in one["record"]["resources"]}
    assert by_name["style"]["resolution"]["status"] == "held"
    assert by_name["style"]["resolution"]["artifact"]["sha256"] == sha(files["style"])
    assert by_name["style"]["hashes"] == {"autov3": autov3(files["style"])[:12]}
    extra = two["record"]["extra"]
    assert extra["Tiled Diffusion"] == {"Method": "MultiDiffusion", "Tile width": 96}
    assert extra["Some-new/key"] == "x" and extra["Seed (first)"] == "1234567"
    assert {r["resolution"]["status"] for r in two["record"]["resources"]} == {"unknown"}
    text = runner("inspect", str(image), "--offline").out
    assert f"{image}: A1111 v1.10.1 (png, read by a1111)" in text
    assert "  lora         style weight 0.8 [autov3 " in text
    assert ": held: lora:style (by autov3)" in text
    assert "  embedding    shiny [sha256_12 " in text


def test_cli_inspect_no_metadata_and_hostile_files_are_one_line_each(registry, tmp_path):
    from conftest import HubRunner

    runner = HubRunner(registry, tmp_path)
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    big = png(tmp_path / "big.png", {"parameters": "x" * (10 << 20)})
    bad16 = with_exif(tmp_path / "bad.webp", user_comment(b"UNICODE\0" + b"\x00a\xd8\x00\x00b"))
    result = runner("inspect", str(plain), str(big), str(bad16), "--offline")
    assert result.out.splitlines() == [
        f"{plain}: no generation metadata",
        f"{big}: no generation metadata ('tEXt chunk' is 10.0 MB, over 4.0 MB: skipped)",
        f"{bad16}: no generation metadata ('UserComment': not valid UTF-16 or UTF-8 text "
        "(illegal UTF-16 surrogate): skipped)",
    ]
    deep = "[" * 200_000 + "]" * 200_000
    cyclic = {
        "1": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "steps": 3}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "a", "model": ["2", 0]}},
    }
    graphs = png(tmp_path / "g.png", {"prompt": json.dumps(cyclic), "workflow": deep})
    nested = png(tmp_path / "n.png", {"prompt": deep})
    junk = tmp_path / "junk.webp"
    junk.write_bytes(b"RIFF\0\0\0\0WEBPjunk")
    result = runner("inspect", str(graphs), str(nested), str(junk), "--offline", ok=False)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.splitlines() == [
        f"error: {junk}: not a readable image (cannot identify image file '{junk}')"
    ]
    assert "  note: the graph loops back to node 2: walk stopped" in result.out
    assert f"{nested}: no generation metadata" in result.out.splitlines()


def test_inspect_imports_no_torch(hub, tmp_path):
    import subprocess
    import sys

    from test_import_cost import PROBE

    base = REAL / "comfy" / "comfyui_examples_lora_multiple"
    comfy = png(
        tmp_path / "c.png", {"prompt": (base.parent / f"{base.name}.prompt.json").read_text()}
    )
    a1111 = png(tmp_path / "a.png", {"parameters": FULL})
    args = json.dumps(["inspect", str(comfy), str(a1111), "--offline"])
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, args],
        cwd=hub.cwd,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "ComfyUI" in proc.stdout and "Civitai v1.10.1" in proc.stdout, proc.stderr
    assert json.loads(proc.stdout.rsplit("HEAVY=", 1)[1]) == []


# -- other writers' layouts ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tail,tool,version",
    [
        (
            "Version: f2.0.1v1.10.1-previous-669-gdfdcbab6",
            "Forge",
            "f2.0.1v1.10.1-previous-669-gdfdcbab6",
        ),
        (
            "Version: f0.0.17v1.8.0rc-latest-276-g29be1da7",
            "Forge",
            "f0.0.17v1.8.0rc-latest-276-g29be1da7",
        ),
        (
            "Version: f1.0.0v2-v1.10.1RC-latest-702-gdd2c4a4b",
            "reForge",
            "f1.0.0v2-v1.10.1RC-latest-702-gdd2c4a4b",
        ),
        ("Version: v1.10.1-12-gabc1234", "A1111", "v1.10.1-12-gabc1234"),
        ("Version: Fooocus v2.5.5", "Fooocus", "v2.5.5"),
        ("App: SD.Next, Version: 2a7005f", "SD.Next", "2a7005f"),
    ],
)
def test_tool_from_version(tail, tool, version, readers, tmp_path):
    text = f"x\nSteps: 20, Sampler: Euler, Seed: 1, {tail}"
    rec = record(png(tmp_path / "v.png", {"parameters": text}), readers)
    assert (rec.tool, rec.version) == (tool, version)
    assert "App" not in rec.extra and "Version" not in rec.extra


def test_sdnext_lists_civitai_air_and_legacy_hypernet(readers, tmp_path):
    text = (
        "a cat\nNegative prompt: \nSteps: 20, Sampler: Euler a, CLiP-skip: 2, "
        'LoRA networks: "ink, oil", LoRA hashes: "0123456789ab, ba9876543210", '
        "Hypernet: anime, Hypernet hash: 0a1b2c3d4e, Hypernet strength: 0.6, "
        'Civitai resources: [{"air": "urn:air:sdxl:lora:civitai:11@22", "modelName": "Ink", '
        '"weight": 0.8}, {"type": "embed", "modelVersionId": 33, "modelName": "bad"}], App: SD.Next'
    )
    rec = record(png(tmp_path / "s.png", {"parameters": text}), readers)
    assert (rec.tool, rec.clip_skip, rec.negative) == ("SD.Next", 2, None)
    assert res(rec, "lora", "ink") == ("ink", {"autov3": "0123456789ab"}, None, None, None)
    assert res(rec, "lora", "oil") == ("oil", {"autov3": "ba9876543210"}, None, None, None)
    assert res(rec, "hypernetwork") == ("anime", {"autov2": "0a1b2c3d4e"}, 0.6, None, None)
    assert res(rec, "lora", "Ink") == ("Ink", {}, 0.8, None, 22)
    assert res(rec, "embedding") == ("bad", {}, None, None, 33)


def test_comfyui_power_lora_loader_bypassed_nodes_and_links_to_primitives(readers, tmp_path):
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "mix.safetensors"}},
        "8": {
            "class_type": "Power Lora Loader (rgthree)",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "PowerLoraLoaderHeaderWidget": {"type": "PowerLoraLoaderHeaderWidget"},
                "lora_1": {"on": True, "lora": "ink.safetensors", "strength": 0.7},
                "lora_2": {"on": False, "lora": "off.safetensors", "strength": 1},
                "LORA_3": {
                    "on": True,
                    "lora": "oil.safetensors",
                    "strength": 0.5,
                    "strengthTwo": 0.2,
                },
                "➕ Add Lora": "",
            },
        },
        "20": {"class_type": "PrimitiveNode", "inputs": {"value": 123456789012}},
        "21": {"class_type": "String Literal", "inputs": {"string": "a castle at dawn"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["21", 0], "clip": ["8", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": ["20", 0], "steps": 9, "model": ["8", 0], "positive": ["6", 0]},
        },
    }
    rec = record(png(tmp_path / "p.png", {"prompt": json.dumps(graph)}), readers)
    assert (rec.seed, rec.steps, rec.prompt) == (123456789012, 9, "a castle at dawn")
    loras = [(r.name, r.strength, r.clip_strength) for r in rec.resources if r.kind == "lora"]
    assert loras == [("ink.safetensors", 0.7, 0.7), ("oil.safetensors", 0.5, 0.2)]
    wf = json.loads((REAL / "comfy" / "comfyui_examples_lora_multiple.workflow.json").read_text())
    next(n for n in wf["nodes"] if n["id"] == 10)["mode"] = 4  # bypass epiNoiseoffset
    rec = record(png(tmp_path / "w.png", {"workflow": json.dumps(wf)}), readers)
    names = [r.name for r in rec.resources if r.kind in ("lora", "checkpoint")]
    assert names == ["v1-5-pruned-emaonly.ckpt", "theovercomer8sContrastFix_sd15.safetensors"]
    assert (rec.steps, rec.prompt) == (20, "masterpiece best quality girl")
    next(n for n in wf["nodes"] if n["id"] == 11)["mode"] = 2  # mute: nothing flows past it
    rec = record(png(tmp_path / "m.png", {"workflow": json.dumps(wf)}), readers)
    assert [r.kind for r in rec.resources] == []
    assert "a link points to node 11, which is missing" in rec.notes


def test_damaged_exif_and_decompression_bomb_dimensions(readers, tmp_path):
    import struct
    import zlib

    from hub.core.errors import InvalidFileError

    path = png(tmp_path / "p.png", {"parameters": FULL})
    data = path.read_bytes()
    junk = b"MM\x00\xe4not a tiff block"
    chunk = (
        struct.pack(">I", len(junk))
        + b"eXIf"
        + junk
        + struct.pack(">I", zlib.crc32(b"eXIf" + junk))
    )
    at = data.index(b"IDAT") - 4
    (tmp_path / "x.png").write_bytes(data[:at] + chunk + data[at:])
    found = read_image(tmp_path / "x.png", readers)
    assert found.record.reader == "a1111"  # the text chunk is still read
    assert len(found.notes) == 1 and found.notes[0].startswith("damaged EXIF (not a TIFF file")
    jpg = tmp_path / "big.jpg"
    Image.new("RGB", (8, 8)).save(jpg, exif=user_comment(b"ASCII\0\0\0" + FULL.encode()))
    raw = bytearray(jpg.read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)  # 9e8 pixels: Pillow refuses
    jpg.write_bytes(bytes(raw))
    with pytest.raises(InvalidFileError) as err:
        read_image(jpg, readers)
    assert err.value.message.startswith(f"{jpg}: not read: Image size (900000000 pixels)")


def test_cli_stack_table_runs_as_a_hub_toml_stack(registry, files, tmp_path):
    import tomllib

    from conftest import HubRunner

    runner = HubRunner(registry, tmp_path)
    text = a1111_text(files, sha(files["mix"])[:10]) + ", Hires upscale: 2"
    image = png(tmp_path / "My castle!.png", {"parameters": text})
    table = runner("inspect", "--stack", str(image), "--offline").out
    assert tomllib.loads(table) == {
        "stacks": {
            "My-castle": {
                "model": f"sha256:{sha(files['mix'])}",
                "vae": f"sha256:{sha(files['mse'])}",
                "loras": [  # REF:TE:UNET, as `<lora:soft:0.5:0.25>` wrote them
                    f"sha256:{sha(files['style'])}:0.8:0.8",
                    f"sha256:{sha(files['soft'])}:0.5:0.25",
                ],
                "embeddings": [f"sha256:{sha(files['shiny'])}"],
                "prompt": "a castle, shiny",  # the tags are the loras above
                "negative": "blurry",
                "steps": 3,
                "cfg": 7.0,
                "sampler": "Euler a",
                "seed": 1,
                "width": 64,
                "height": 64,
            }
        }
    }
    assert "# lora soft = lora:soft" in table and "# not applied: Hires upscale" in table
    (tmp_path / "hub.toml").write_text(table)
    [plan] = runner("generate", "--stack", "My-castle", "--dry-run", "--json").json()
    assert plan["model"]["name"] == "mix" and plan["vae"]["name"] == "mse"
    assert [(a["name"], a["te"], a["unet"]) for a in plan["loras"]] == [
        ("style", 0.8, 0.8),
        ("soft", 0.5, 0.25),
    ]
    comfy = REAL / "comfy" / "comfyui_examples_lora_multiple.prompt.json"
    image = png(tmp_path / "c.png", {"prompt": comfy.read_text()})
    table = runner("inspect", "--stack", str(image), "--offline").out
    assert tomllib.loads(table)["stacks"]["c"] == {
        "prompt": "masterpiece best quality girl",
        "negative": "bad hands",
        "steps": 20,
        "cfg": 8.0,
        "sampler": "Euler",  # ComfyUI's euler + normal
        "seed": 513173432917412,
        "width": 512,
        "height": 512,
    }
    assert "# checkpoint v1-5-pruned-emaonly.ckpt: unknown" in table
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    result = runner("inspect", "--stack", str(plain), "--offline", ok=False)
    assert result.code == 1
    assert result.err == f"error: {plain}: no generation metadata to make a stack from\n"


def test_civitai_resources_resolve_by_version_id_of_an_installed_file(hub, models, tmp_path):
    from fake_sites import FakeSite, Hosted

    site = FakeSite()
    hub.env["HUB_CIVITAI_URL"] = site.origin
    try:
        data = models["kohya-sd1"].read_bytes()
        site.add(Hosted(101, 1001, 5001, data, "pixel_art_v1.safetensors", "Pixel Art"))
        hub("install", "civitai:101@1001")
    finally:
        site.close()
    text = (
        'pixels\nSteps: 20, Seed: 1, Civitai resources: [{"type": "lora", "weight": 0.6, '
        '"modelVersionId": 1001, "modelName": "Pixel Art"}, {"type": "lora", '
        '"modelVersionId": 1002, "modelName": "Pixel Art"}]'
    )
    [found] = hub("inspect", str(png(tmp_path / "v.png", {"parameters": text})), "--json").json()
    got = [
        (r["version_id"], r["strength"], r["resolution"]["status"], r["resolution"]["by"])
        for r in found["record"]["resources"]
    ]
    assert got == [(1001, 0.6, "held", "version id"), (1002, None, "unknown", None)]
    held = found["record"]["resources"][0]["resolution"]["artifact"]
    assert held["sha256"] == hashlib.sha256(data).hexdigest()


def test_files_not_held_are_installable_from_the_share_site_unless_offline(hub, models, tmp_path):
    from fake_sites import FakeSite, Hosted

    data = models["kohya-sd1"].read_bytes()
    v3 = autov3(models["kohya-sd1"])[:12]
    text = (
        "pixels <lora:pixel:0.7> <lora:other:1>\nSteps: 20, Seed: 1, Model hash: 0123456789, "
        f'Lora hashes: "pixel: {v3}"'
    )
    image = png(tmp_path / "i.png", {"parameters": text})
    site = FakeSite()
    hub.env["HUB_CIVITAI_URL"] = site.origin
    try:
        site.add(Hosted(101, 1001, 5001, data, "pixel_art_v1.safetensors", "Pixel Art"))
        [found] = hub("inspect", str(image), "--json").json()
        how = {r["name"]: r["resolution"] for r in found["record"]["resources"]}
        assert (how["pixel"]["status"], how["pixel"]["install"]) == ("installable", f"autov3:{v3}")
        assert how["pixel"]["remote"]["file"] == "pixel_art_v1.safetensors"
        assert how["pixel"]["remote"]["sha256"].lower() == hashlib.sha256(data).hexdigest()
        assert how[None]["status"] == "unknown"  # the checkpoint: not on the site
        assert how["other"]["status"] == "unknown"  # no hash: the site is not asked
        text_out = hub("inspect", str(image)).out
        assert (
            f"installable: hub install autov3:{v3} (civitai: pixel_art_v1.safetensors)" in text_out
        )
        asked = len(site.api_requests)
        [offline] = hub("inspect", str(image), "--json", "--offline").json()
        assert len(site.api_requests) == asked  # --offline asks nothing
        assert {r["resolution"]["status"] for r in offline["record"]["resources"]} == {"unknown"}
        hub("install", f"autov3:{v3}")
        [again] = hub("inspect", str(image), "--json").json()
        assert again["record"]["resources"][0]["resolution"]["status"] == "held"
    finally:
        site.close()
    hub.env["HUB_CIVITAI_URL"] = site.origin  # closed now: nothing answers
    result = hub("inspect", str(image), "--json")
    [down] = result.json()
    assert len(down["notes"]) == 1 and down["notes"][0].startswith("share site not asked further")


def test_comfyui_efficiency_and_comfyroll_lora_stacks(readers, tmp_path):
    graph = {
        "20": {
            "class_type": "Efficient Loader",
            "inputs": {
                "ckpt_name": "mix.safetensors",
                "vae_name": "vae-ft-mse.safetensors",
                "clip_skip": -2,
                "lora_name": "None",
                "lora_model_strength": 1.0,
                "lora_clip_strength": 1.0,
                "positive": "a castle",
                "negative": "fog",
                "empty_latent_width": 640,
                "empty_latent_height": 512,
                "batch_size": 1,
                "lora_stack": ["30", 0],
            },
        },
        "30": {
            "class_type": "LoRA Stacker",
            "inputs": {
                "input_mode": "simple",
                "lora_count": 2,
                "lora_name_1": "a.safetensors",
                "lora_wt_1": 0.6,
                "lora_name_2": "None",
                "lora_wt_2": 1.0,
                "lora_name_3": "c.safetensors",  # past lora_count: not used
                "lora_wt_3": 1.0,
                "lora_stack": ["31", 0],
            },
        },
        "31": {
            "class_type": "CR LoRA Stack",
            "inputs": {
                "switch_1": "On",
                "lora_name_1": "b.safetensors",
                "model_weight_1": 0.9,
                "clip_weight_1": 0.4,
                "switch_2": "Off",
                "lora_name_2": "off.safetensors",
                "model_weight_2": 1.0,
                "clip_weight_2": 1.0,
                "switch_3": "On",
                "lora_name_3": "None",
                "model_weight_3": 1.0,
                "clip_weight_3": 1.0,
            },
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 4,
                "steps": 6,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["20", 0],
                "positive": ["20", 1],
                "negative": ["20", 2],
                "latent_image": ["20", 3],
            },
        },
    }
    rec = record(png(tmp_path / "e.png", {"prompt": json.dumps(graph)}), readers)
    assert settings(rec) == ("ComfyUI", "euler", "normal", 6, 7.0, 4, 640, 512, 2)
    assert (rec.prompt, rec.negative) == ("a castle", "fog")
    assert res(rec, "checkpoint")[0] == "mix.safetensors"
    assert res(rec, "vae")[0] == "vae-ft-mse.safetensors"
    loras = [(r.name, r.strength, r.clip_strength) for r in rec.resources if r.kind == "lora"]
    assert loras == [("a.safetensors", 0.6, 0.6), ("b.safetensors", 0.9, 0.4)]


def test_lyco_tags_are_lora_family_add_ons(readers, tmp_path):
    text = "x <lyco:ly:0.3> <LoRA:big:te=0.2:unet=0.9>\nSteps: 1, Seed: 2, Sampler: Euler"
    rec = record(png(tmp_path / "l.png", {"parameters": text}), readers)
    assert res(rec, "lora", "ly") == ("ly", {}, 0.3, 0.3, None)
    assert res(rec, "lora", "big") == ("big", {}, 0.9, 0.2, None)
    bad = record(png(tmp_path / "b.png", {"parameters": "x <lora:q:abc>\n" + text[2:]}), readers)
    assert bad.notes == ["'<lora:q:abc>': 'abc' is not a number"]


# -- SwarmUI, stealth pnginfo, BLAKE3 ---------------------------------------------------------


def swarm_metadata(files: dict[str, Path]) -> dict:
    """SwarmUI's JSON as its T2IParamInput writes it: numbers as strings, a list as a
    comma-separated string, models without .safetensors, ``0x`` + AutoV3 in sui_models."""
    return {
        "sui_image_params": {
            "prompt": "a castle, shiny",
            "negativeprompt": "blurry",
            "model": "SD15/renamed",
            "seed": "42",
            "steps": 20,
            "cfgscale": "6.5",
            "aspectratio": "Custom",
            "width": 512,
            "height": 768,
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "clipstopatlayer": "-2",
            "loras": "styles/style,soft",
            "loraweights": ["0.8", "0.5"],
            "loratencweights": "0.7,0.25",
            "vae": "None",
            "automaticvae": True,
            "swarm_version": "0.9.6.2",
        },
        "sui_extra_data": {"date": "2025-01-02", "generation_time": "1.0 (prep) and 2.0 (gen)"},
        "sui_models": [
            {
                "name": "SD15/renamed.safetensors",
                "param": "model",
                "hash": f"0x{autov3(files['mix'])}",
            },
            {
                "name": "styles/style.safetensors",
                "param": "loras",
                "hash": f"0x{autov3(files['style'])}",
            },
            {"name": "soft.safetensors", "param": "loras", "hash": f"0x{autov3(files['soft'])}"},
        ],
    }


def test_swarmui_json_in_png_and_utf16le_exif_resolves_by_autov3(files, inspect_in, tmp_path):
    from hub.images import sampler_name

    text = json.dumps(swarm_metadata(files), indent=2)
    raw = b"UNICODE\0" + text.encode("utf-16-le")  # ImageSharp's byte order
    for path in (
        png(tmp_path / "s.png", {"parameters": text}),
        with_exif(tmp_path / "s.jpg", user_comment(raw, big_endian=False)),
    ):
        found = inspect_in(path)
        rec = found.record
        assert settings(rec) == ("SwarmUI", "dpmpp_2m", "karras", 20, 6.5, 42, 512, 768, 2)
        assert (rec.prompt, rec.negative, rec.version) == ("a castle, shiny", "blurry", "0.9.6.2")
        assert sampler_name(rec) == "DPM++ 2M Karras"
        assert res(rec, "lora", "styles/style") == (
            "styles/style",
            {"autov3": autov3(files["style"])},
            0.8,
            0.7,
            None,
        )
        assert res(rec, "lora", "soft")[2:4] == (0.5, 0.25)
        assert rec.extra == {
            "aspectratio": "Custom",
            "vae": "None",
            "automaticvae": True,
            "sui_extra_data.date": "2025-01-02",
            "sui_extra_data.generation_time": "1.0 (prep) and 2.0 (gen)",
        }
        # the checkpoint's AutoV3 is not computed at import: it is now, and kept
        assert statuses(found) == {
            ("checkpoint", "SD15/renamed"): ("held", "autov3", "mix"),
            ("lora", "styles/style"): ("held", "autov3", "style"),
            ("lora", "soft"): ("held", "autov3", "soft"),
        }


def test_invokeai_blake3_is_computed_when_asked_and_kept(files, registry, inspect_in, tmp_path):
    import sqlite3

    from blake3 import blake3

    def b3(path: Path) -> str:
        return blake3(path.read_bytes()).hexdigest()

    meta = {
        "positive_prompt": "a castle",
        "model": {
            "key": "u1",
            "hash": f"blake3:{b3(files['mix'])}",
            "name": "Mix 2",
            "base": "sd-1",
        },
        "loras": [
            {
                "model": {"key": "u3", "hash": f"blake3:{b3(files['style'])}", "name": "x"},
                "weight": 0.5,
            }
        ],
        "vae": {"key": "u2", "hash": "blake3:" + "0" * 64, "name": "gone"},
    }
    found = inspect_in(png(tmp_path / "i.png", {"invokeai_metadata": json.dumps(meta)}))
    assert statuses(found) == {
        ("checkpoint", "Mix 2"): ("held", "blake3", "mix"),
        ("lora", "x"): ("held", "blake3", "style"),
        ("vae", "gone"): ("unknown", None, None),
    }
    with sqlite3.connect(registry / "registry.db") as con:
        kept = dict(con.execute("SELECT name, blake3 FROM artifact WHERE blake3 IS NOT NULL"))
    assert kept["mix"] == b3(files["mix"]) and kept["style"] == b3(files["style"])
    assert kept["mse"] == b3(files["mse"])  # the VAEs were searched for "gone"


def hide(img: Image.Image, payload: bytes, signature: str) -> Image.Image:
    """The stealth pnginfo writer's layout, pixel by pixel: signature, 32-bit length in bits,
    payload; column by column (x outer, y inner), MSB first; alpha LSBs, or R, G, B LSBs."""
    data = signature.encode() + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
    rgb = "rgb" in signature
    pixels, index = img.load(), 0
    for x in range(img.width):
        for y in range(img.height):
            if index >= len(bits):
                return img
            px = list(pixels[x, y])
            for channel in (0, 1, 2) if rgb else (3,):
                if index < len(bits):
                    px[channel] = (px[channel] & ~1) | bits[index]
                    index += 1
            pixels[x, y] = tuple(px)
    raise AssertionError("payload larger than the image")


def noisy(mode: str, size: tuple[int, int] = (200, 150)) -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def test_stealth_pnginfo_in_alpha_and_rgb_bits(readers, tmp_path):
    import gzip

    text = FULL.encode()
    for signature, payload, mode in (
        ("stealth_pngcomp", gzip.compress(text), "RGBA"),
        ("stealth_pnginfo", text, "RGBA"),
        ("stealth_rgbcomp", gzip.compress(text), "RGB"),
        ("stealth_rgbinfo", text, "RGBA"),
    ):
        path = tmp_path / f"{signature}.png"
        hide(noisy(mode), payload, signature).save(path)
        found = read_image(path, readers)
        assert found.record is not None and found.record.reader == "a1111", signature
        assert (
            found.record.prompt
            == record(png(tmp_path / "t.png", {"parameters": FULL}), readers).prompt
        )
        assert found.notes == [f"metadata read from the pixels ({signature})"]
    novelai = {
        "Software": "NovelAI",
        "Description": "1girl",
        "Comment": json.dumps({"steps": 28, "seed": 9}),
    }
    path = tmp_path / "nai.png"
    hide(noisy("RGBA"), gzip.compress(json.dumps(novelai).encode()), "stealth_pngcomp").save(path)
    rec = record(path, readers)
    assert (rec.tool, rec.prompt, rec.steps, rec.seed) == ("NovelAI", "1girl", 28, 9)
    chunks = tmp_path / "both.png"  # a text chunk wins over the pixels
    info = PngInfo()
    info.add_text("parameters", "from the chunk\nSteps: 3, Seed: 4, Size: 8x8")
    hide(noisy("RGBA"), text, "stealth_pnginfo").save(chunks, pnginfo=info)
    assert record(chunks, readers).prompt == "from the chunk"
    plain = tmp_path / "plain.png"
    noisy("RGBA").save(plain)
    assert read_image(plain, readers).notes == []


def test_hostile_stealth_payloads_are_a_note(readers, tmp_path):
    import gzip

    cases = {
        "long": ("stealth_pnginfo", b"x" * 100, 10**6),  # says 1e6 bits, the image has fewer
        "bomb": ("stealth_pngcomp", gzip.compress(b"\0" * (5 << 20)), None),
        "bad": ("stealth_pnginfo", b"\xff\xfe\xfa", None),
        "gzip": ("stealth_pngcomp", b"not gzip at all", None),
    }
    notes = {}
    for name, (signature, payload, claimed) in cases.items():
        img = hide(noisy("RGBA", (256, 256)), payload, signature)
        if claimed is not None:  # rewrite the length field
            fake = signature.encode() + claimed.to_bytes(4, "big")
            bits = [(b >> (7 - i)) & 1 for b in fake for i in range(8)]
            pixels = img.load()
            for k, bit in enumerate(bits):
                x, y = divmod(k, img.height)
                r, g, b, a = pixels[x, y]
                pixels[x, y] = (r, g, b, (a & ~1) | bit)
        path = tmp_path / f"{name}.png"
        img.save(path)
        found = read_image(path, readers)
        assert found.record is None, name
        [notes[name]] = found.notes
    assert notes["long"] == (
        "hidden metadata in the pixels: stealth_pnginfo: a payload of 1000000 bits does not "
        "fit the image"
    )
    assert notes["bomb"] == (
        "hidden metadata in the pixels: stealth_pngcomp: inflates to over 4194304 bytes"
    )
    assert notes["bad"].startswith("hidden metadata in the pixels: stealth_pnginfo: not UTF-8")
    assert notes["gzip"].startswith("hidden metadata in the pixels: stealth_pngcomp: damaged gzip")
