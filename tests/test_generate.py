"""``hub generate``: mini models generate reproducibly; add-ons are checked before loading,
applied exactly (diffusers' own LoRA fusing as the reference) and removed without a trace."""

from __future__ import annotations

import json
from pathlib import Path

import minimodels as tm
import numpy as np
import pytest
import reference
import torch
from PIL import Image
from safetensors.torch import load_file

from hub.core import emphasis

SMALL = dict(steps=3, width=64, height=64)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with mini sd1 and sdxl models and add-ons of every kind generate uses."""
    from hub import plugins
    from hub.context import Context
    from hub.importing import import_path
    from hub.register import Overrides

    root = tmp_path_factory.mktemp("generate")
    plugins.reset_plugins()
    ctx = Context.load(home=str(root / "home"))
    for path, name in (
        (tm.mini_checkpoint("sd1", dtype=torch.float32), "sd1"),
        (tm.mini_checkpoint("sdxl"), "xl"),
        (tm.mini_checkpoint("sd2"), "sd2"),
        (tm.embedding("sd2"), "sd2-shiny"),
        (tm.kohya_lora("sd1"), "style"),
        (tm.lycoris_lora("sd1", "loha"), "soft"),
        (tm.kohya_lora("sdxl"), "xl-style"),
        (tm.embedding("sd1"), "shiny"),
        (tm.embedding("sdxl"), "xl-shiny"),
        (tm.hypernetwork("sd1"), "anime"),
        (tm.peft_lora("sd1", metadata=True), "peft-meta"),
        (tm.lycoris_lora("sd1", "full"), "full"),
    ):
        import_path(ctx, path, Overrides(name=name))
    ctx.db.dispose()
    return root / "home"


@pytest.fixture(scope="module")
def hub(home: Path):
    from hub.generate import Hub

    return Hub(home=home)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.image).astype(np.int16)


def _run(hub, prompt: str, tmp_path: Path, model: str = "sd1", **kw):
    from hub.generate import Job

    out = tmp_path / f"{len(list(tmp_path.glob('*.png'))):03d}.png"
    settings = SMALL | dict(seed=7) | kw
    return hub.generate(Job(prompt=prompt, model=model, output=out, **settings))


def test_same_seed_same_pixels_and_lora_strength(hub, tmp_path):
    plain = _run(hub, "a castle", tmp_path)
    again = _run(hub, "a castle", tmp_path)
    assert np.array_equal(_pixels(plain), _pixels(again))
    assert _pixels(plain).std() > 0  # an image, not a blank
    zero = _run(hub, "a castle <lora:style:0>", tmp_path)
    assert np.array_equal(_pixels(zero), _pixels(plain))
    strong = _run(hub, "a castle <lora:style:0.8>", tmp_path)
    assert not np.array_equal(_pixels(strong), _pixels(plain))
    assert not strong.reloaded and strong.timings["load"] < plain.timings["total"]
    other_seed = _run(hub, "a castle", tmp_path, seed=8)
    assert not np.array_equal(_pixels(other_seed), _pixels(plain))


def test_mini_sdxl_generates(hub, tmp_path):
    one = _run(hub, "a castle <lora:xl-style:0.5> xl-shiny", tmp_path, model="xl")
    two = _run(hub, "a castle <lora:xl-style:0.5> xl-shiny", tmp_path, model="xl")
    assert one.image.size == (64, 64) and np.array_equal(_pixels(one), _pixels(two))
    assert [e["name"] for e in one.record["embeddings"]] == ["xl-shiny"]
    plain = _run(hub, "a castle", tmp_path, model="xl")
    assert not np.array_equal(_pixels(one), _pixels(plain))


def test_mini_sd2_generates(hub, tmp_path):
    one = _run(hub, "a (castle:1.2), sd2-shiny", tmp_path, model="sd2")
    two = _run(hub, "a (castle:1.2), sd2-shiny", tmp_path, model="sd2")
    assert one.image.size == (64, 64) and np.array_equal(_pixels(one), _pixels(two))
    assert [e["name"] for e in one.record["embeddings"]] == ["sd2-shiny"]
    assert hub.loaded.pipe.tokenizer.pad_token_id == 0  # OpenCLIP pads with "!"


def test_everything_is_restored_after_a_full_stack(hub, tmp_path):
    _run(hub, "warmup", tmp_path)
    model = hub.loaded
    modules = {k: model.parts[k] for k in ("unet", "text_encoder")}
    before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in modules.items()}
    tokenizer = model.pipe.tokenizer
    vocab = dict(tokenizer.get_vocab())
    table = modules["text_encoder"].get_input_embeddings()
    result = _run(
        hub,
        "a castle, shiny <lora:style:0.8> <lora:soft:0.6> <hypernet:anime:0.7>",
        tmp_path,
        negative="blurry",
    )
    assert [a["name"] for a in result.record["loras"]] == ["style", "soft"]
    assert result.record["embeddings"][0]["name"] == "shiny"
    # generation leaves LoRA patches in place for the next job; switching the stack off
    # must restore every weight exactly
    _run(hub, "warmup", tmp_path)
    for key, module in modules.items():
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, before[key][name]), f"{key}.{name}"
    assert model.pipe.tokenizer is tokenizer and tokenizer.get_vocab() == vocab
    assert modules["text_encoder"].get_input_embeddings() is table
    attn = [m for m in modules["unet"].modules() if hasattr(m, "to_k")]
    assert attn and all(isinstance(m.to_k, torch.nn.Linear) for m in attn)


def test_kohya_lora_unet_output_equals_diffusers_fuse_lora(hub, tmp_path):
    _run(hub, "x <lora:style:0.8>", tmp_path)
    ours = hub.loaded.parts
    theirs = reference.fused_pipeline("sd1", tm.kohya_lora("sd1"), scale=0.8)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    ids = torch.randint(0, 49407, (1, 77), generator=g)
    with torch.no_grad():
        context = theirs.text_encoder(ids)[0]
        mine = ours["text_encoder"](ids)[0]
        expected = theirs.unet(sample, 10, encoder_hidden_states=context).sample
        got = ours["unet"](sample, 10, encoder_hidden_states=context).sample
    assert (mine - context).abs().max() <= 1e-5 * context.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    plain = reference.pipeline("sd1")
    with torch.no_grad():
        untouched = plain.unet(sample, 10, encoder_hidden_states=context).sample
    assert (untouched - expected).abs().max() > 1e-3 * expected.abs().max()  # the LoRA acts


def test_peft_metadata_and_full_diff_biases_patch_exactly(hub, tmp_path):
    """Generation patches a PEFT LoRA with lora_adapter_metadata as diffusers fuses it, adds
    a full file's diff_b to the biases (reported in the fit check), and puts every weight and
    bias back bit for bit."""
    from hub.core import lora_keys

    _run(hub, "warmup", tmp_path)
    weights = hub.loaded.weights
    before = {k: v.clone() for k, v in weights.items()}
    _run(hub, "x <lora:peft-meta:0.8>", tmp_path)
    expected = reference.fused_ldm_state("sd1", tm.peft_lora("sd1", metadata=True), scale=0.8)
    for key, ref in expected.items():
        assert (weights[key] - ref).abs().max() <= 1e-5 * ref.abs().max(), key
    result = _run(hub, "x <lora:full:0.7>", tmp_path)
    diffs = load_file(tm.lycoris_lora("sd1", "full"))
    biased = [k.removesuffix(".diff_b") for k in diffs if k.endswith(".diff_b")]
    assert biased and any(
        f"bias changes (diff_b): {len(biased)}" in line for line in result.reports
    )
    by_diffusers, _ = lora_keys.unet_modules({k: v.shape for k, v in before.items()}, "sd1")
    for module in biased:
        bias = by_diffusers[module.removeprefix("lora_unet_")].removesuffix("weight") + "bias"
        want = before[bias] + 0.7 * diffs[f"{module}.diff_b"]
        assert (weights[bias] - want).abs().max() <= 1e-6 * want.abs().max(), bias
    _run(hub, "warmup", tmp_path)
    assert all(torch.equal(weights[k], before[k]) for k in before)


def test_embedding_changes_only_its_tokens(hub, tmp_path):
    from hub.core import addons
    from hub.plugins.generating import Extras

    _run(hub, "warmup", tmp_path)
    model = hub.loaded
    vectors = load_file(tm.embedding("sd1"))["emb_params"]
    encoder = model.parts["text_encoder"]

    def encode(prompt: str, extras: Extras) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        with model._embeddings(extras) as rewrite, torch.no_grad():
            ids = model.pipe.tokenizer(rewrite(prompt), return_tensors="pt").input_ids
            rows = encoder.get_input_embeddings()(ids)[0]
            return ids[0].tolist(), rows, encoder(ids)[0][0]

    art = {"path": str(tm.embedding("sd1")), "format": "safetensors", "kind": "embedding"}
    extras = Extras(embeddings=(("shiny", addons.embedding(art)),))
    ids, rows, hidden = encode("a photo of shiny", extras)
    base_ids, base_rows, base_hidden = encode("a photo of cat dog", Extras())
    assert len(ids) == len(base_ids) == 7  # BOS a photo of <shiny> <shiny_1> EOS
    assert torch.equal(rows[4:6], vectors)
    assert torch.equal(rows[:4], base_rows[:4]) and torch.equal(rows[6:], base_rows[6:])
    assert torch.equal(hidden[:4], base_hidden[:4])  # causal: positions before it unchanged
    assert not torch.allclose(hidden[4:6], base_hidden[4:6])


def test_hypernetwork_keys_and_values_follow_the_a1111_formula(hub, tmp_path):
    _run(hub, "warmup", tmp_path)
    unet = hub.loaded.parts["unet"]
    attn2 = next(m for n, m in unet.named_modules() if n.endswith("attn2"))
    attn1 = next(m for n, m in unet.named_modules() if n.endswith("attn1"))
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    contexts: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(mod, args, output) -> None:
            seen.setdefault(name, (args[0].clone(), output.clone()))

        return hook

    def context_of(mod, args, kwargs) -> None:
        contexts.setdefault("c", kwargs["encoder_hidden_states"])

    hooks = [
        attn2.to_k.register_forward_hook(keep("k")),
        attn2.to_v.register_forward_hook(keep("v")),
        attn1.to_k.register_forward_hook(keep("self-k")),
        attn2.register_forward_pre_hook(context_of, with_kwargs=True),
    ]
    try:
        _run(hub, "a castle <hypernet:anime:0.6>", tmp_path, steps=1)
    finally:
        for h in hooks:
            h.remove()
    obj = torch.load(tm.hypernetwork("sd1"), weights_only=True)  # trusted: built by the test
    context = contexts["c"].double()
    for side, name in ((0, "k"), (1, "v")):
        sd = {k: v.double() for k, v in obj[768][side].items()}
        hidden = context @ sd["linear.0.weight"].T + sd["linear.0.bias"]
        expected_in = context + (hidden @ sd["linear.1.weight"].T + sd["linear.1.bias"]) * 0.6
        got_in, got_out = seen[name]
        assert (got_in.double() - expected_in).abs().max() < 1e-4
        weight = getattr(attn2, f"to_{name}").weight.double()
        assert (got_out.double() - expected_in @ weight.T).abs().max() < 1e-4
    width = seen["self-k"][0].shape[-1]
    assert width in obj  # self-attention runs through the width's module too


def test_misfits_and_unknown_names_are_refused_before_loading(home, tmp_path):
    from hub.core.errors import HubError
    from hub.generate import Hub, Job

    fresh = Hub(home=home)
    cases = [
        (Job(prompt="x <lora:xl-style:0.8>", model="sd1"), "xl-style"),
        (Job(prompt="x", model="sd1", embeddings=["xl-shiny"]), "xl-shiny"),
        (Job(prompt="x <lora:nobody:0.8>", model="sd1"), "nobody"),
        (Job(prompt="x <hypernet:anime>", model="xl"), "anime"),
    ]
    for job, name in cases:
        with pytest.raises(HubError) as info:
            fresh.generate(job)
        assert name in str(info.value) and "\n" not in str(info.value)
    assert fresh.loaded is None


def test_cli_refusal_is_one_line(home, tmp_path):
    from conftest import HubRunner

    runner = HubRunner(home, tmp_path)
    result = runner("generate", "x <lora:xl-style:0.8>", "--model", "sd1", ok=False)
    assert result.code != 0 and "Traceback" not in result.err
    first = result.err.splitlines()[0]
    assert first.startswith("error: xl-style (sdxl LoRA) does not fit sd1 (sd1 model)")


def test_from_png_reproduces_the_pixels_and_infotext(home, tmp_path):
    from conftest import HubRunner

    from hub.core import infotext

    runner = HubRunner(home, tmp_path)
    first = tmp_path / "first.png"
    runner(
        "generate",
        "a castle, shiny <lora:style:0.8>",
        "--model",
        "sd1",
        "--lora",
        "soft:0.5",
        "--sampler",
        "DPM++ 2M Karras",
        "--seed",
        "42",
        "--steps",
        "3",
        "-W",
        "64",
        "-H",
        "64",
        "-o",
        str(first),
    )
    with Image.open(first) as img:
        text, record = img.text["parameters"], json.loads(img.text["sd-hub"])
    info = infotext.parse_infotext(text)
    assert info.prompt == "a castle, shiny <lora:style:0.8> <lora:soft:0.5>"
    p = info.params
    assert (p["Steps"], p["Sampler"], p["Schedule type"], p["Seed"]) == (
        "3",
        "DPM++ 2M",
        "Karras",
        "42",
    )
    assert p["Size"] == (64, 64)
    import hashlib

    assert (
        p["Model hash"]
        == hashlib.sha256(tm.mini_checkpoint("sd1", dtype=torch.float32).read_bytes()).hexdigest()[
            :10
        ]
    )
    loras = infotext.hash_list(p["Lora hashes"])
    assert set(loras) == {"style", "soft"}
    assert (
        infotext.hash_list(p["TI hashes"])["shiny"]
        == hashlib.sha256(tm.embedding("sd1").read_bytes()).hexdigest()[:12]
    )
    assert record["model"]["sha256"].startswith(p["Model hash"])
    again = tmp_path / "again.png"
    runner("generate", "--from", str(first), "-o", str(again))
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    # A1111 infotext alone (no sd-hub record) resolves by hashes too
    a1111 = tmp_path / "a1111.png"
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("parameters", text)
    Image.open(first).save(a1111, pnginfo=meta)
    third = tmp_path / "third.png"
    runner("generate", "--from", str(a1111), "-o", str(third))
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(third)))


def test_stack_from_hub_toml_and_batch(home, tmp_path):
    from conftest import HubRunner

    (tmp_path / "hub.toml").write_text(
        "[stacks.castle]\n"
        'model = "sd1"\n'
        'loras = ["style:0.5"]\n'
        'prompt = "masterpiece"\n'
        'negative = "blurry"\n'
        "steps = 2\nwidth = 64\nheight = 64\nseed = 3\n"
    )
    runner = HubRunner(home, tmp_path)
    out = runner(
        "generate", "a castle", "--stack", "castle", "-o", str(tmp_path / "s.png"), "--json"
    ).json()[0]
    assert out["record"]["prompt"].startswith("a castle, masterpiece <lora:style:0.5>")
    assert out["record"]["negative"] == "blurry" and out["record"]["settings"]["steps"] == 2
    batch = tmp_path / "jobs.json"
    batch.write_text(
        json.dumps(
            [
                {"prompt": "one <lora:style:0.3>", "seed": 1},
                {"prompt": "two", "loras": ["soft"], "seed": 2},
            ]
        )
    )
    results = runner(
        "generate",
        "--batch",
        str(batch),
        "--model",
        "sd1",
        "--steps",
        "2",
        "-W",
        "64",
        "-H",
        "64",
        "-o",
        str(tmp_path / "batch"),
        "--json",
    ).json()
    assert [r["record"]["settings"]["seed"] for r in results] == [1, 2]
    assert [len(r["record"]["loras"]) for r in results] == [1, 1]
    assert all(Path(r["path"]).is_file() for r in results)


def test_diffusers_folder_and_vae_swap(home, tmp_path):
    """A converted diffusers folder generates the same pixels as its single file; a VAE
    swap changes the decode only."""
    from conftest import HubRunner

    runner = HubRunner(home, tmp_path)
    runner("import", str(tm.vae_file()), "--name", "other-vae")
    folder = runner("convert", "sd1", "--to", "diffusers", "--name", "sd1-folder", "--json").json()
    assert folder["format"] == "diffusers"
    args = ["a castle", "--seed", "5", "--steps", "2", "-W", "64", "-H", "64"]
    runner("generate", *args, "--model", "sd1", "-o", str(tmp_path / "a.png"))
    runner("generate", *args, "--model", "sd1-folder", "-o", str(tmp_path / "b.png"))
    runner("generate", *args, "--model", "sd1", "--vae", "other-vae", "-o", str(tmp_path / "c.png"))
    a, b, c = (np.asarray(Image.open(tmp_path / f"{x}.png")) for x in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with Image.open(tmp_path / "c.png") as img:
        assert "VAE: other-vae" in img.text["parameters"]


def _model(hub, tmp_path, model: str):
    _run(hub, "warmup", tmp_path, model=model)
    return hub.loaded


@pytest.mark.parametrize("model", ["sd1", "sd2", "xl"])
def test_one_plain_chunk_equals_diffusers_encode_prompt(hub, tmp_path, model):
    m = _model(hub, tmp_path, model)
    prompt, negative = "a photo of a castle, misty", "blurry"
    with torch.inference_mode():
        ours = m.encode_chunks([emphasis.parse(prompt), emphasis.parse(negative)], clip_skip=1)
        if model == "xl":
            theirs = m.pipe.encode_prompt(prompt, None, "cpu", 1, True, negative)
            names = ["prompt_embeds", "negative_prompt_embeds"]
            names += ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        else:
            theirs = m.pipe.encode_prompt(prompt, "cpu", 1, True, negative)
            names = ["prompt_embeds", "negative_prompt_embeds"]
    for name, tensor in zip(names, theirs, strict=True):
        assert torch.equal(ours[name], tensor), name


def test_weights_long_prompts_and_clip_skip_follow_a1111(hub, tmp_path):
    m = _model(hub, tmp_path, "sd1")
    tok, encoder = m.pipe.tokenizer, m.parts["text_encoder"]

    def framed(ids: list[int]) -> torch.Tensor:
        return torch.tensor([[49406, *ids, 49407] + [49407] * (75 - len(ids))])

    norm = encoder.final_layer_norm
    saved = norm.bias.detach().clone()
    with torch.no_grad():  # a mean well away from 0 (a random model's is about 0)
        norm.bias.copy_(torch.linspace(0.5, 1.5, saved.numel()))
    try:
        with torch.inference_mode():
            # a weight multiplies its tokens' rows, then the chunk keeps its mean
            got = m.encode_chunks([emphasis.parse("a (castle:1.5) tower"), [("", 1.0)]], 1)
            ids = tok("a castle tower", add_special_tokens=False).input_ids
            z = encoder(framed(ids))[0][0].double()
    finally:
        with torch.no_grad():
            norm.bias.copy_(saved)
    w = torch.ones(77, dtype=torch.float64)
    w[2] = 1.5  # BOS, a, castle
    want = z * w[:, None]
    want = want * (z.mean() / want.mean())
    assert torch.allclose(got["prompt_embeds"][0].double(), want, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        # 100 tokens: two chunks of 77, each framed and encoded on its own
        words = " ".join(["castle"] * 100)
        got = m.encode_chunks([emphasis.parse(words), emphasis.parse("")], 1)
        castle = tok("castle", add_special_tokens=False).input_ids[0]
        assert got["prompt_embeds"].shape == (1, 154, encoder.config.hidden_size)
        second = encoder(framed([castle] * 25))[0][0]
        assert torch.allclose(got["prompt_embeds"][0, 77:], second, atol=1e-6)
        empty = encoder(framed([]))[0][0]  # the shorter negative is padded with empty chunks
        assert torch.allclose(got["negative_prompt_embeds"][0, 77:], empty, atol=1e-6)

        # clip skip 2: the penultimate layer, through the final layer norm
        got = m.encode_chunks([emphasis.parse("a castle"), [("", 1.0)]], 2)
        ids = tok("a castle", add_special_tokens=False).input_ids
        hidden = encoder(framed(ids), output_hidden_states=True).hidden_states[-2]
        want = torch.nn.functional.layer_norm(
            hidden,
            hidden.shape[-1:],
            encoder.final_layer_norm.weight,
            encoder.final_layer_norm.bias,
            encoder.final_layer_norm.eps,
        )
        assert torch.allclose(got["prompt_embeds"], want, atol=1e-6)


def test_generate_with_emphasis_long_prompts_and_clip_skip(hub, tmp_path):
    plain = np.asarray(_run(hub, "a castle", tmp_path).image)
    same = np.asarray(_run(hub, "a (castle:1.0)", tmp_path).image)
    assert np.array_equal(plain, same)  # weight 1 is the plain prompt
    weighted = np.asarray(_run(hub, "a (castle:1.6)", tmp_path).image)
    assert not np.array_equal(plain, weighted)
    long = ", ".join(["a (tall:1.2) castle on a hill"] * 12) + " BREAK [fog]"
    result = _run(hub, long, tmp_path, negative="blurry", clip_skip=2)
    assert result.image.size == (SMALL["width"], SMALL["height"])
    assert "Clip skip: 2" in result.infotext and "(tall:1.2)" in result.infotext


def test_a_multi_vector_embedding_stays_in_one_chunk(hub, tmp_path):
    from hub.core import addons
    from hub.plugins.generating import Extras

    m = _model(hub, tmp_path, "sd1")
    art = {"path": str(tm.embedding("sd1")), "format": "safetensors", "kind": "embedding"}
    extras = Extras(embeddings=(("shiny", addons.embedding(art)),))  # two vectors
    with m._embeddings(extras) as rewrite:
        got = m._chunks(emphasis.parse(rewrite(" ".join(["castle"] * 74) + " shiny")), 0)
        shiny = m.pipe.tokenizer.convert_tokens_to_ids(["<shiny>", "<shiny_1>"])
    assert [len(c.ids) for c in got] == [74, 2] and got[1].ids == shiny


def test_a_pickled_checkpoint_generates_what_its_safetensors_twin_does(tmp_path):
    """A .ckpt as A1111-era trainers saved it ({"state_dict": ...}, zip pickle), read by
    the safe loader: the same pixels as the safetensors file with the same tensors."""
    from hub.plugins.builtin.diffusers_backend import DiffusersModel
    from hub.plugins.generating import Extras, Request

    single = tm.mini_checkpoint("sd1", dtype=torch.float32)
    ckpt = tmp_path / "mini.ckpt"
    torch.save({"state_dict": load_file(single), "global_step": 10}, ckpt)
    request = Request(prompt="a castle", steps=2, width=64, height=64, seed=3)
    images = []
    for path, fmt in ((single, "safetensors"), (ckpt, "pickle")):
        art = {"kind": "checkpoint", "format": fmt, "path": str(path), "base": "sd1"}
        model = DiffusersModel(art, "cpu", "float32")
        images.append(np.asarray(model.generate(request, Extras())))
    assert np.array_equal(images[0], images[1])


def test_a_failing_batch_job_is_reported_and_the_others_still_run(home, tmp_path):
    from conftest import HubRunner

    runner = HubRunner(home, tmp_path)
    batch = tmp_path / "jobs.json"
    batch.write_text(
        json.dumps(
            [
                {"prompt": "one", "seed": 1},
                {"prompt": "two <lora:nobody:1>", "seed": 2},
                {"prompt": "three", "seed": 3},
            ]
        )
    )
    args = ["--batch", batch, "--model", "sd1", "--steps", "1", "-W", "64", "-H", "64"]
    out = tmp_path / "out"
    planned = runner("generate", *args, "--dry-run", "--json", ok=False)
    assert planned.code == 1 and [p["settings"]["seed"] for p in planned.json()] == [1, 3]
    result = runner("generate", *args, "-o", out, "--json", ok=False)
    assert result.code == 1 and "Traceback" not in result.err
    assert [r["record"]["settings"]["seed"] for r in result.json()] == [1, 3]
    assert sorted(p.name for p in out.iterdir()) == ["00001.png", "00003.png"]
    [error] = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: job 2: ") and "nobody" in error
    assert "1 of 3 jobs failed" in result.err


def test_model_and_addons_resolve_by_hash_prefix_as_show_does(home, tmp_path):
    import hashlib

    from conftest import HubRunner

    runner = HubRunner(home, tmp_path)
    model = hashlib.sha256(tm.mini_checkpoint("sd1", dtype=torch.float32).read_bytes()).hexdigest()
    lora = hashlib.sha256(tm.kohya_lora("sd1").read_bytes()).hexdigest()
    assert runner("show", model[:8], "--json").json()["name"] == "sd1"
    [plan] = runner(
        "generate", "x", "--model", model[:8], "--lora", f"{lora[:10]}:0.5", "--dry-run", "--json"
    ).json()
    assert plan["model"] == {"name": "sd1", "kind": "checkpoint", "sha256": model}
    assert plan["loras"] == [
        {"name": "style", "kind": "lora", "sha256": lora, "te": 0.5, "unet": 0.5}
    ]


def test_parsed_add_ons_belong_to_the_hub_and_stay_within_its_bytes(home, tmp_path):
    """A Hub with room for one add-on keeps only the newest (the cache is the Hub's, not the
    process's), and switching back to an evicted LoRA gives the pixels it gave before."""
    from hub.generate import Hub
    from hub.registry.queries import list_artifacts

    roomy, small = Hub(home=home), Hub(home=home, addon_cache_bytes=1)
    prompts = ["a castle <lora:style:0.8>", "a castle <lora:soft:0.6>", "a castle <lora:style:0.8>"]
    got = []
    for prompt in prompts:
        got.append(_pixels(_run(small, prompt, tmp_path)))
        assert len(small.addon_cache) == 1
    assert len(roomy.addon_cache) == 0
    assert np.array_equal(got[0], got[2]) and not np.array_equal(got[0], got[1])
    for prompt, pixels in zip(prompts, got, strict=True):
        assert np.array_equal(_pixels(_run(roomy, prompt, tmp_path)), pixels)
    with roomy.ctx.db.reader() as reader:
        sizes = {a["name"]: a["size"] for a in list_artifacts(reader, kind="lora")}
    assert len(roomy.addon_cache) == 2 and roomy.addon_cache.size == sizes["style"] + sizes["soft"]


def test_a_prompt_is_encoded_once_while_the_text_encoder_is_unchanged(hub, tmp_path):
    """The same prompt again reuses its encodings (the text encoder does not run; same
    pixels); a LoRA written into the text encoder, and its removal, make it run again."""
    from hub.plugins.builtin.diffusers_backend import TEXT_PREFIXES

    first = _run(hub, "a tower", tmp_path, seed=1)
    runs: list[int] = []
    hook = hub.loaded.parts["text_encoder"].register_forward_hook(lambda *_: runs.append(1))
    try:
        again = _run(hub, "a tower", tmp_path, seed=1)
        assert runs == [] and np.array_equal(_pixels(again), _pixels(first))
        before = hub.loaded.patches.writes(TEXT_PREFIXES)
        styled = _run(hub, "a tower <lora:style:0.8>", tmp_path, seed=1)
        assert hub.loaded.patches.writes(TEXT_PREFIXES) != before  # its te modules
        assert len(runs) == 2  # prompt and negative, encoded anew
        assert not np.array_equal(_pixels(styled), _pixels(first))
        back = _run(hub, "a tower", tmp_path, seed=1)
        assert len(runs) == 4 and np.array_equal(_pixels(back), _pixels(first))
    finally:
        hook.remove()
