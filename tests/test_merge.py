"""Baking LoRAs into checkpoints, checked against diffusers' own LoRA loading and fusing."""

from __future__ import annotations

import json

import flux_models as fm
import minimodels as tm
import pytest
import reference
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hub.core import lora_keys


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.float() - b.float()).abs().max() <= 1e-5 * max(1e-12, b.float().abs().max())


@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_bake_equals_diffusers_fuse_lora_sd1(hub, layout):
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    lora = tm.kohya_lora("sd1") if layout == "kohya" else tm.peft_lora("sd1")
    hub("import", ckpt, "--name", "base")
    hub("import", lora, "--name", "style")
    out = hub("merge", "base", "--lora", "style:0.8", "--name", "baked", "--json").json()
    assert (out["kind"], out["base"], out["source"]["name"]) == ("checkpoint", "sd1", "merge")
    baked = load_file(out["path"])
    original = load_file(ckpt)
    expected = reference.fused_ldm_state("sd1", lora, scale=0.8)
    changed = 0
    for key, ref in expected.items():
        assert _close(baked[key], ref), key
        changed += not torch.equal(baked[key], original[key])
    assert changed >= 64  # UNet attention and text-encoder projections moved
    assert any(
        k.startswith("cond_stage_model.") and not torch.equal(baked[k], original[k])
        for k in expected
    )


def test_bake_sdxl_kohya_equals_diffusers_including_fused_openclip(hub):
    """SDXL: lora_te2_ modules land on row slices of OpenCLIP's fused in_proj."""
    ckpt = tm.mini_checkpoint("sdxl", dtype=torch.float32)
    lora = tm.kohya_lora("sdxl")
    hub("import", ckpt, "--name", "xl")
    hub("import", lora, "--name", "xl-style")
    out = hub("merge", "xl", "--lora", "xl-style", "--name", "xl-baked", "--json").json()
    baked = load_file(out["path"])
    expected = reference.fused_ldm_state("sdxl", lora)
    for key, ref in expected.items():
        assert _close(baked[key], ref), key
    in_proj = [k for k in expected if k.endswith("attn.in_proj_weight")]
    original = load_file(ckpt)
    assert in_proj and all(not torch.equal(baked[k], original[k]) for k in in_proj)


def test_unet_only_and_recipe_metadata(hub):
    import json

    from safetensors import safe_open

    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    hub("import", ckpt, "--name", "base")
    hub("import", tm.kohya_lora("sd1"), "--name", "a")
    hub("import", tm.lycoris_lora("sd1", "loha"), "--name", "b")
    out = hub(
        "merge",
        "base",
        "--lora",
        "a:0.5",
        "--lora",
        "lora:b:1:0.7",
        "--unet-only",
        "--name",
        "mix",
        "--json",
    ).json()
    baked, original = load_file(out["path"]), load_file(ckpt)
    te = [k for k in original if k.startswith("cond_stage_model.")]
    assert all(torch.equal(baked[k], original[k]) for k in te)
    with safe_open(out["path"], "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["type"] == "sd-hub" and [x["name"] for x in recipe["loras"]] == ["a", "b"]
    assert recipe["loras"][1] == {
        "name": "b",
        "sha256": recipe["loras"][1]["sha256"],
        "te": 1.0,
        "unet": 0.7,
    }
    models = json.loads(meta["sd_merge_models"])
    assert len(models) == 3
    lineage = hub("show", "mix", "--json").json()["lineage"]
    assert sorted(p["relation"] for p in lineage) == ["merge-base", "merge-lora", "merge-lora"]


def test_sdxl_lora_on_sd1_is_refused(hub):
    hub("import", tm.mini_checkpoint("sd1"), "--name", "base")
    hub("import", tm.kohya_lora("sdxl"), "--name", "xl")
    result = hub("merge", "base", "--lora", "xl", "--name", "bad", ok=False)
    assert result.code != 0 and "sdxl LoRA" in result.err and "do not fit" in result.err
    assert "Traceback" not in result.err
    assert len(hub("list", "--json").json()) == 2


def _ckpts(hub, n: int):
    paths = [tm.mini_checkpoint("sd1", dtype=torch.float32, seed=s) for s in range(n)]
    for i, p in enumerate(paths):
        hub("import", p, "--name", f"m{i}")
    return [load_file(p) for p in paths]


def test_weighted_sum_and_add_difference_equal_the_formulas(hub):
    a, b, c = _ckpts(hub, 3)
    ws = load_file(
        hub("merge", "m0", "--with", "m1", "--alpha", "0.3", "--name", "ws", "--json").json()[
            "path"
        ]
    )
    ad = load_file(
        hub(
            "merge",
            "m0",
            "--with",
            "m1",
            "--with",
            "m2",
            "--method",
            "add-difference",
            "--alpha",
            "0.7",
            "--name",
            "ad",
            "--json",
        ).json()["path"]
    )
    for k in a:
        assert torch.equal(ws[k], (1 - 0.3) * a[k] + 0.3 * b[k]), k
        assert torch.equal(ad[k], a[k] + 0.7 * (b[k] - c[k])), k


def test_dare_is_seeded_and_ties_keeps_signs(hub):
    a, b = _ckpts(hub, 2)
    d1 = load_file(
        hub(
            "merge",
            "m0",
            "--with",
            "m1",
            "--method",
            "dare",
            "--seed",
            "5",
            "--name",
            "d1",
            "--json",
        ).json()["path"]
    )
    d2 = load_file(
        hub(
            "merge",
            "m0",
            "--with",
            "m1",
            "--method",
            "dare",
            "--seed",
            "5",
            "--name",
            "d2",
            "--json",
        ).json()["path"]
    )
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
    t = load_file(
        hub(
            "merge",
            "m0",
            "--with",
            "m1",
            "--method",
            "ties",
            "--alpha",
            "1",
            "--density",
            "0.5",
            "--name",
            "t",
            "--json",
        ).json()["path"]
    )
    key = next(k for k in a if a[k].numel() > 100)
    tau = b[key] - a[key]
    kept = t[key] - a[key]
    assert ((kept == 0) | (torch.sign(kept) == torch.sign(tau))).all()
    assert 0.4 < (kept != 0).float().mean() < 0.6


def test_mismatched_architectures_are_refused(hub):
    hub("import", tm.mini_checkpoint("sd1"), "--name", "a")
    hub("import", tm.mini_checkpoint("sd1-inpaint"), "--name", "b")
    result = hub("merge", "a", "--with", "b", "--name", "x", ok=False)
    assert result.code != 0 and "input_blocks.0.0.weight" in result.err
    hub("import", tm.mini_checkpoint("sdxl"), "--name", "c")
    result = hub("merge", "a", "--with", "c", "--name", "y", ok=False)
    assert result.code != 0 and "different architectures" in result.err


def test_concat_of_two_loras_equals_applying_both_and_svd_full_rank(hub):
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    hub("import", ckpt, "--name", "base")
    hub("import", tm.kohya_lora("sd1"), "--name", "a")
    hub("import", tm.kohya_lora("sd1", rank=2, alpha=1, seed=7), "--name", "b")
    both = load_file(
        hub(
            "merge", "base", "--lora", "a:0.6", "--lora", "b:0.9", "--name", "both", "--json"
        ).json()["path"]
    )
    cat = hub("merge", "--loras", "a:0.6", "--loras", "b:0.9", "--name", "ab", "--json").json()
    assert (cat["kind"], cat["algo"], cat["base"]) == ("lora", "lora", "sd1")
    once = load_file(
        hub("merge", "base", "--lora", "ab", "--name", "once", "--json").json()["path"]
    )
    svd = hub(
        "merge", "--loras", "a:0.6", "--loras", "b:0.9", "--rank", "64", "--name", "abs", "--json"
    ).json()
    assert svd["kind"] == "lora" and svd["algo"] == "lora"
    full = load_file(
        hub("merge", "base", "--lora", "abs", "--name", "full", "--json").json()["path"]
    )
    base = load_file(ckpt)
    moved = [k for k in both if not torch.equal(both[k], base[k])]
    assert moved
    for k in moved:
        assert _close(once[k], both[k]), k
        assert (full[k] - both[k]).abs().max() <= 1e-4 * both[k].abs().max(), k


def test_refs_resolve_as_show_does_hash_prefixes_and_expected_kinds(hub):
    """`merge` takes hash prefixes as `show` does, and a name shared by the checkpoint and a
    LoRA names the checkpoint as BASE and the LoRA after --lora (as `generate` reads them)."""
    import hashlib

    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    lora = tm.kohya_lora("sd1")
    hub("import", ckpt, "--name", "base")
    hub("import", lora, "--name", "base")
    ckpt_sha, lora_sha = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (ckpt, lora))
    by_hash = hub(
        "merge", ckpt_sha[:8], "--lora", f"{lora_sha[:8]}:0.8", "--name", "by-hash", "--json"
    ).json()
    by_name = hub("merge", "base", "--lora", "base:0.8", "--name", "by-name", "--json").json()
    for out in (by_hash, by_name):
        lineage = hub("show", out["name"], "--json").json()["lineage"]
        assert {p["parent_sha256"] for p in lineage} == {ckpt_sha, lora_sha}
    a, b = load_file(by_hash["path"]), load_file(by_name["path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "name, variant", [("sd1", "lora"), ("sd1", "rslora"), ("sd1", "dora"), ("sdxl", "lora")]
)
def test_bake_honours_peft_metadata_alpha_and_patterns(hub, name, variant):
    """A diffusers-saved PEFT LoRA with lora_adapter_metadata (r=4, lora_alpha=8, per-module
    rank_pattern/alpha_pattern regexes; use_rslora; use_dora) bakes to what diffusers'
    load_lora_weights + fuse_lora makes of it. DoRA at strength 1 only: other strengths
    follow A1111 and ComfyUI (``W + s·(W'-W)``), which diffusers does not."""
    strength = 1.0 if variant == "dora" else 0.8
    ckpt = tm.mini_checkpoint(name, dtype=torch.float32)
    lora = tm.peft_lora(name, metadata=True, variant=variant)
    hub("import", ckpt, "--name", "base")
    hub("import", lora, "--name", "p")
    out = hub("merge", "base", "--lora", f"p:{strength}", "--name", "baked", "--json").json()
    baked, original = load_file(out["path"]), load_file(ckpt)
    expected = reference.fused_ldm_state(name, lora, scale=strength)
    if variant == "dora":  # diffusers loads no text-encoder magnitudes (it reports them MISSING)
        expected = {k: v for k, v in expected.items() if k.startswith("model.diffusion_model.")}
        key = "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight"
        part = _peft_module(lora, "k_proj")
        v = original[key] + 8 / 4 * part["lora_B"] @ part["lora_A"]  # lora_alpha / r
        assert _close(baked[key], v * (part["lora_magnitude_vector"] / v.norm(dim=1))[:, None])
    changed = 0
    for key, ref in expected.items():
        assert _close(baked[key], ref), key
        changed += not torch.equal(baked[key], original[key])
    assert changed >= 64


def _peft_module(path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of the first text-encoder layer's ``name`` module in a PEFT file, by the
    part of their key after the module name (weights without ``.weight``)."""
    prefix = f"text_encoder.encoder.layers.0.self_attn.{name}."
    return {
        k.removeprefix(prefix).removesuffix(".weight"): v
        for k, v in load_file(path).items()
        if k.startswith(prefix)
    }


def test_full_diff_bias_is_baked_and_reported(hub):
    """LyCORIS full files: ``diff_b`` is added to the bias at the LoRA's strength (A1111's
    network_full, ComfyUI), and the fit check counts it."""
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    full = tm.lycoris_lora("sd1", "full")
    hub("import", ckpt, "--name", "base")
    hub("import", full, "--name", "f")
    out = hub("merge", "base", "--lora", "f:0.7", "--name", "baked", "--json")
    baked, original, diffs = load_file(out.json()["path"]), load_file(ckpt), load_file(full)
    biased = [k.removesuffix(".diff_b") for k in diffs if k.endswith(".diff_b")]
    assert biased
    assert f"bias changes (diff_b): {len(biased)}" in out.err
    by_diffusers, _ = lora_keys.unet_modules({k: v.shape for k, v in original.items()}, "sd1")
    changed = set()
    for module in biased:
        weight_key = by_diffusers[module.removeprefix("lora_unet_")]
        bias_key = weight_key.removesuffix("weight") + "bias"
        want = original[bias_key] + 0.7 * diffs[f"{module}.diff_b"]
        assert _close(baked[bias_key], want), bias_key
        want = original[weight_key] + 0.7 * diffs[f"{module}.diff"]
        assert _close(baked[weight_key], want), weight_key
        changed.add(bias_key)
    assert all(
        torch.equal(baked[k], original[k])
        for k in original
        if k.endswith("bias") and k not in changed
    )


def test_merging_a_converted_peft_lora_keeps_its_scale(hub):
    """PEFT metadata scales survive PEFT -> kohya conversion and LoRA + LoRA merging: the
    concatenation (and its full-rank SVD) bakes to diffusers' fused results added up."""
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    peft = tm.peft_lora("sd1", metadata=True)
    other = tm.kohya_lora("sd1", rank=2, alpha=1, seed=7)
    hub("import", ckpt, "--name", "base")
    hub("import", peft, "--name", "p")
    hub("import", other, "--name", "o")
    hub("convert", "p", "--to", "kohya", "--name", "pk")
    base = load_file(ckpt)
    first = reference.fused_ldm_state("sd1", peft, scale=0.6)
    second = reference.fused_ldm_state("sd1", other, scale=0.9)
    for method, extra, tol in (("cat", [], 1e-5), ("svd", ["--rank", "64"], 1e-4)):
        hub("merge", "--loras", "pk:0.6", "--loras", "o:0.9", *extra, "--name", method)
        out = hub("merge", "base", "--lora", method, "--name", f"{method}-baked", "--json")
        baked = load_file(out.json()["path"])
        for key in first:
            want = first[key] + second[key] - base[key]
            err = (baked[key] - want).abs().max()
            assert err <= tol * max(1e-12, want.abs().max()), (method, key)


def test_peft_metadata_that_cannot_be_honoured_is_refused_in_one_line(hub, tmp_path):
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    source = tm.peft_lora("sd1", metadata=True)
    with safe_open(source, "pt") as fh:
        config = json.loads(fh.metadata()["lora_adapter_metadata"])
    hub("import", ckpt, "--name", "base")
    for name, text, reason in (
        ("rank", json.dumps(config | {"unet.r": 16}), "the metadata gives rank 16"),
        ("json", "{not json", "lora_adapter_metadata is not valid JSON"),
    ):
        path = tmp_path / f"{name}.safetensors"
        save_file(load_file(source), path, metadata={"lora_adapter_metadata": text})
        hub("import", path, "--name", name)
        result = hub("merge", "base", "--lora", name, "--name", f"{name}-baked", ok=False)
        assert result.code != 0 and reason in result.err and f"{name}.safetensors: " in result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2
    assert len(hub("list", "--json").json()) == 3


DIT_FILES = {  # (model, layout, dtype) -> the tiny file of a seed
    ("flux", "bfl", "BF16"): lambda seed: fm.flux_file("dev", "bfl", "BF16", seed),
    ("flux", "bfl", "F8_E4M3"): lambda seed: fm.flux_file("dev", "bfl", "F8_E4M3", seed),
    ("flux", "diffusers", "F8_E4M3"): lambda seed: fm.flux_file(
        "dev", "diffusers", "F8_E4M3", seed
    ),
    ("sd3", "sai", "BF16"): lambda seed: fm.sd3_file("sai", "sd35m", "BF16", seed),
    ("sd3", "diffusers", "F8_E4M3"): lambda seed: fm.sd3_file(
        "diffusers", "sd35m", "F8_E4M3", seed
    ),
}


def _bytes_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.parametrize("case", sorted(DIT_FILES), ids="-".join)
def test_weighted_sum_and_add_difference_of_flux_and_sd3_files(hub, case):
    """Tensor by tensor equal to the formula in float32, rounded to the inputs' dtype as
    torch rounds (fp8 included); ``--dtype`` stores another."""
    paths = [DIT_FILES[case](seed) for seed in (1, 2, 3)]
    for i, path in enumerate(paths):
        hub("import", str(path), "--name", f"m{i}")
    a, b, c = (load_file(p) for p in paths)
    ws = hub("merge", "m0", "--with", "m1", "--alpha", "0.3", "--name", "ws", "--json").json()
    assert (ws["base"], ws["kind"]) == (case[0], "checkpoint")
    ad = hub(
        "merge", "m0", "--with", "m1", "--with", "m2", "--method", "add-difference",
        "--alpha", "0.7", "--dtype", "bf16", "--name", "ad", "--json",
    ).json()  # fmt: skip
    ws, ad = load_file(ws["path"]), load_file(ad["path"])
    assert set(ws) == set(ad) == set(a)
    dtype = a[next(iter(a))].dtype
    for k in a:
        x, y, z = a[k].float(), b[k].float(), c[k].float()
        assert _bytes_equal(ws[k], ((1 - 0.3) * x + 0.3 * y).to(dtype)), k
        assert _bytes_equal(ad[k], (x + 0.7 * (y - z)).to(torch.bfloat16)), k
    assert sum(not torch.equal(ws[k], a[k]) for k in a) >= len(a) - 1  # pos_embed may repeat


def test_flux_with_sd3_or_another_layout_is_refused_in_one_line(hub):
    hub("import", str(fm.flux_file("dev", "bfl", "BF16", 1)), "--name", "flux")
    hub("import", str(fm.flux_file("dev", "diffusers", "BF16", 2)), "--name", "flux-diffusers")
    hub("import", str(fm.sd3_file("sai", "sd35m", "BF16", 1)), "--name", "sd3")
    for other, words in (("sd3", "different architectures"), ("flux-diffusers", "layouts")):
        result = hub("merge", "flux", "--with", other, "--name", "x", ok=False)
        assert result.code != 0 and words in result.err, result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2
    assert hub("list", "--json").json() and "x" not in [
        a["name"] for a in hub("list", "--json").json()
    ]
