"""The add-on math against independent float64 implementations of FORMATS.md §4, written
here from the formulas, on random tensors of real shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adapters import lora, patch

g = torch.Generator().manual_seed(0)


def rnd(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _mod(algo: str, **tensors: torch.Tensor) -> lora.Module:
    return lora.Module("lora_unet_x", algo, tensors)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return (a.double() - b).abs().max() <= tol * max(1e-12, b.abs().max())


def test_lora_linear_with_alpha():
    up, down = rnd(40, 4), rnd(4, 30)
    mod = _mod(
        "lora", **{"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0)}
    )
    want = (up.double() @ down.double()) * (2.0 / 4)
    assert _close(lora.delta(mod, torch.zeros(40, 30)), want)


def test_locon_3x3_equals_conv_composition():
    down, up = rnd(4, 6, 3, 3), rnd(8, 4, 1, 1)
    mod = _mod("locon", **{"lora_up.weight": up, "lora_down.weight": down})
    dw = lora.delta(mod, torch.zeros(8, 6, 3, 3))
    x = rnd(1, 6, 9, 9)
    composed = F.conv2d(F.conv2d(x.double(), down.double(), padding=1), up.double())
    assert _close(F.conv2d(x.double(), dw.double(), padding=1), composed)


def test_loha():
    w1a, w1b, w2a, w2b = rnd(20, 4), rnd(4, 12), rnd(20, 4), rnd(4, 12)
    mod = _mod(
        "loha", hada_w1_a=w1a, hada_w1_b=w1b, hada_w2_a=w2a, hada_w2_b=w2b, alpha=torch.tensor(1.0)
    )
    want = (w1a.double() @ w1b.double()) * (w2a.double() @ w2b.double()) * (1.0 / 4)
    assert _close(lora.delta(mod, torch.zeros(20, 12)), want)


def test_lokr_decomposed_w2():
    w1, w2a, w2b = rnd(4, 3), rnd(5, 2), rnd(2, 6)
    mod = _mod("lokr", lokr_w1=w1, lokr_w2_a=w2a, lokr_w2_b=w2b, alpha=torch.tensor(1.0))
    w2 = w2a.double() @ w2b.double()
    want = torch.zeros(20, 18, dtype=torch.float64)
    for i in range(4):
        for j in range(3):
            want[i * 5 : (i + 1) * 5, j * 6 : (j + 1) * 6] = w1[i, j].double() * w2
    assert _close(lora.delta(mod, torch.zeros(20, 18)), want * 0.5)


def test_full_diff_and_ia3():
    diff = rnd(7, 5)
    assert _close(lora.delta(_mod("full", diff=diff), torch.zeros(7, 5)), diff.double())
    w, vec = rnd(7, 5), rnd(7)
    ia3 = _mod("ia3", weight=vec, on_input=torch.tensor(0))
    assert _close(lora.delta(ia3, w), w.double() * vec.double()[:, None])
    ia3_in = _mod("ia3", weight=rnd(5), on_input=torch.tensor(1))
    assert _close(lora.delta(ia3_in, w), w.double() * ia3_in.tensors["weight"].double()[None])


def test_dora_per_output_row():
    w, up, down, scale = rnd(12, 10), rnd(12, 3), rnd(3, 10), rnd(12, 1).abs() + 1
    mod = _mod(
        "dora",
        **{
            "lora_up.weight": up,
            "lora_down.weight": down,
            "alpha": torch.tensor(3.0),
            "dora_scale": scale,
        },
    )
    v = w.double() + up.double() @ down.double()
    want = v * (scale.double() / v.norm(dim=1, keepdim=True)) - w.double()
    assert _close(lora.delta(mod, w), want)


def test_apply_then_restore_is_bit_identical():
    weights = {"a": rnd(16, 8).half(), "b": rnd(8, 4, 3, 3)}
    before = {k: v.clone() for k, v in weights.items()}
    changes = {
        "a": [
            patch.Change(
                _mod("lora", **{"lora_up.weight": rnd(16, 2), "lora_down.weight": rnd(2, 8)}), 0.7
            )
        ],
        "b": [
            patch.Change(
                _mod(
                    "loha",
                    hada_w1_a=rnd(8, 2),
                    hada_w1_b=rnd(2, 36),
                    hada_w2_a=rnd(8, 2),
                    hada_w2_b=rnd(2, 36),
                ),
                1.0,
            )
        ],
    }
    with patch.patch_tensors(weights, changes):
        assert not torch.equal(weights["a"], before["a"])
        assert not torch.equal(weights["b"], before["b"])
    assert all(torch.equal(weights[k], before[k]) for k in weights)


def test_fused_qkv_rows_change_only_their_slice():
    w = rnd(30, 10)
    mod = _mod("lora", **{"lora_up.weight": rnd(10, 2), "lora_down.weight": rnd(2, 10)})
    out = patch.patched(w, [patch.Change(mod, 1.0, (10, 20))])
    assert torch.equal(out[:10], w[:10]) and torch.equal(out[20:], w[20:])
    assert _close(
        out[10:20],
        w[10:20].double()
        + (mod.tensors["lora_up.weight"].double() @ mod.tensors["lora_down.weight"].double()),
    )


def test_glora_current_layout():
    w = rnd(6, 5)
    a1, a2, b1, b2 = rnd(5, 2), rnd(2, 5), rnd(6, 2), rnd(2, 5)
    mod = _mod(
        "glora",
        **{
            "a1.weight": a1,
            "a2.weight": a2,
            "b1.weight": b1,
            "b2.weight": b2,
            "alpha": torch.tensor(1.0),
        },
    )
    want = (w.double() @ a1.double() @ a2.double() + b1.double() @ b2.double()) * 0.5
    assert _close(lora.delta(mod, w), want)


def test_embedding_layouts():
    from adapters import embedding

    sd1 = embedding.parse({"emb_params": rnd(3, 768)})
    assert (sd1.count, sd1.base) == (3, "sd1")
    xl = embedding.parse({"clip_l": rnd(2, 768), "clip_g": rnd(2, 1280)})
    assert (xl.count, xl.base) == (2, "sdxl")
    one = embedding.parse({"<tok>": rnd(1024)})
    assert (one.count, one.base) == (1, "sd2")


def test_hypernetwork_module_equals_the_a1111_formula():
    from adapters import hypernetwork

    width = 8
    tensors, fields = (
        {},
        {
            "layer_structure": [1, 2, 1],
            "activation_func": "relu",
            "activate_output": False,
            "is_layer_norm": False,
        },
    )
    for side in (0, 1):
        tensors[f"{width}.{side}.linear.0.weight"] = rnd(16, 8)
        tensors[f"{width}.{side}.linear.0.bias"] = rnd(16)
        tensors[f"{width}.{side}.linear.2.weight"] = rnd(8, 16)  # index 1 is the ReLU
        tensors[f"{width}.{side}.linear.2.bias"] = rnd(8)
    net = hypernetwork.parse(tensors, fields)
    x = rnd(2, 5, 8)
    k, v = net.apply(x, 0.5)
    for side, got in ((0, k), (1, v)):
        w1, b1 = (tensors[f"8.{side}.linear.0.{p}"].double() for p in ("weight", "bias"))
        w2, b2 = (tensors[f"8.{side}.linear.2.{p}"].double() for p in ("weight", "bias"))
        mlp = torch.relu(x.double() @ w1.T + b1) @ w2.T + b2
        assert _close(got.detach(), x.double() + mlp * 0.5)
    other = rnd(2, 3, 4)
    assert net.apply(other, 1.0) == (other, other)


def test_plain_lora_fit_by_shapes():
    """The shape-only verdict: True exactly where the product is the weight's rows by its
    flattened columns (the fused apply's own condition), None where a delta must be run."""

    def verdict(up_shape, down_shape, weight_shape):
        mod = _mod(
            "lora", **{"lora_up.weight": rnd(*up_shape), "lora_down.weight": rnd(*down_shape)}
        )
        return lora.plain_lora_fits(mod, weight_shape)

    assert verdict((40, 4), (4, 30), (40, 30)) is True
    assert verdict((40, 4, 1, 1), (4, 30, 1, 1), (40, 30, 1, 1)) is True  # 1x1 conv
    assert verdict((40, 4), (4, 30), (40, 30, 1, 1)) is True  # Linear LoRA on a 1x1 conv
    assert verdict((40, 4), (4, 30), (30, 40)) is False  # same size, transposed
    assert verdict((40, 4), (4, 30), (40, 31)) is False
    assert verdict((40, 4), (8, 30), (40, 30)) is False  # ranks disagree
    assert verdict((40, 4, 1, 1), (4, 30, 3, 3), (40, 30, 3, 3)) is None  # LoCon 3x3
    rep = patch.report(
        "x",
        lora.Adapter(
            {
                "lora_unet_x": _mod(
                    "lora", **{"lora_up.weight": rnd(40, 4), "lora_down.weight": rnd(4, 30)}
                )
            },
            "lora",
        ),
        {"w": (30, 40)},
        lambda name: ("w", None),
    )
    assert not rep.matched and "do not fit a weight of shape [30, 40]" in rep.mismatched[0][1]


def _peft(name: str, rank: int, **extra: torch.Tensor) -> lora.Module:
    tensors = {"lora_up.weight": rnd(40, rank), "lora_down.weight": rnd(rank, 30)} | extra
    algo = "dora" if "dora_scale" in extra else "lora"
    return lora.Module(name, algo, tensors)


def test_peft_scale_follows_peft_pattern_matching():
    """lora_alpha / r per module, each from the first pattern key that matches the end of the
    module name at a dot (peft's rule), by hand; rsLoRA divides by sqrt(r)."""
    config = {
        "unet.r": 4,
        "unet.lora_alpha": 8,
        "unet.rank_pattern": {"attn2.to_k": 2},
        "unet.alpha_pattern": {r"down_blocks\.0\..*attn1\.to_v": 3, "to_k": 1},
        "text_encoder.r": 4,
        "text_encoder.lora_alpha": 6,
        "text_encoder.use_rslora": True,
        "text_encoder.alpha_pattern": {"text_model.encoder.layers.0.self_attn.q_proj": 10},
    }
    block = "unet.down_blocks.0.attentions.0.transformer_blocks.0"
    cases = [
        (f"{block}.attn1.to_q", 4, 8 / 4),
        (f"{block}.attn1.to_v", 4, 3 / 4),
        (f"{block}.attn2.to_k", 2, 1 / 2),  # rank and alpha both from patterns
        ("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v", 4, 8 / 4),
        ("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q", 4, 8 / 4),
        ("unet.x.not_to_k", 4, 8 / 4),  # "to_k" matches at a dot only
        ("text_encoder.encoder.layers.0.self_attn.q_proj", 4, 10 / 2),  # transformers 5 name
        ("text_encoder.encoder.layers.1.self_attn.q_proj", 4, 6 / 2),
    ]
    for name, rank, want in cases:
        assert lora.peft_scale(config, _peft(name, rank)) == want, name
    assert lora.peft_scale(config, _peft("text_encoder_2.encoder.layers.0.mlp.fc1", 4)) is None
    up, down = rnd(40, 4), rnd(4, 30)
    state = {f"{block}.attn1.to_v.lora_B.weight": up, f"{block}.attn1.to_v.lora_A.weight": down}
    mod = lora.parse(state, config).modules[f"{block}.attn1.to_v"]
    assert _close(lora.delta(mod, torch.zeros(40, 30)), 0.75 * up.double() @ down.double())


def test_peft_metadata_that_contradicts_the_tensors_is_refused():
    config = {"unet.r": 8, "unet.lora_alpha": 8}
    for mod, message in (
        (_peft("unet.a.to_q", 4), "the metadata gives rank 8, the tensors rank 4"),
        (_peft("unet.a.to_q", 8, dora_scale=rnd(40)), "use_dora=False but the module has"),
    ):
        try:
            lora.peft_scale(config, mod)
        except lora.AdapterError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(message)
    dora = {"unet.r": 8, "unet.use_dora": True}
    try:
        lora.peft_scale(dora, _peft("unet.a.to_q", 8))
    except lora.AdapterError as exc:
        assert "use_dora=True but the module lacks" in str(exc)
    else:
        raise AssertionError("use_dora without magnitudes")


def test_fit_check_places_and_counts_diff_b():
    """diff_b lands on the bias beside the weight (the same rows of a fused in_proj), is
    counted in the report, and a missing or misshapen bias is a misfit."""
    diff, diff_b = rnd(10, 8), rnd(10)
    adapter = lora.Adapter({"m": _mod("full", diff=diff, diff_b=diff_b)}, "full")
    shapes = {"a.in_proj_weight": (30, 8), "a.in_proj_bias": (30,)}
    rep = patch.report("f", adapter, shapes, lambda name: ("a.in_proj_weight", (10, 20)))
    assert rep.ok and rep.biases == {"m": ("a.in_proj_bias", (10, 20))}
    assert (
        rep.summary()
        == "f: 1 modules match, 0 have no target, 0 do not fit; bias changes (diff_b): 1"
    )
    changes = patch.plan([(rep, adapter, 1.0, 0.5)])
    assert set(changes) == {"a.in_proj_weight", "a.in_proj_bias"}
    bias = rnd(30)
    out = patch.patched(bias, changes["a.in_proj_bias"])
    assert torch.equal(out[:10], bias[:10]) and torch.equal(out[20:], bias[20:])
    assert _close(out[10:20], bias[10:20].double() + 0.5 * diff_b.double())
    for bias_shapes, reason in (
        ({}, "diff_b has no bias to change (b.bias is absent)"),
        ({"b.bias": (11,)}, "diff_b [10] does not fit the bias b.bias [11]"),
    ):
        rep = patch.report(
            "f", adapter, {"b.weight": (10, 8)} | bias_shapes, lambda n: ("b.weight", None)
        )
        assert not rep.ok and rep.mismatched == [("m", reason)]


def test_patch_set_stacks_plain_loras_in_place_and_switches_exactly():
    """Three fp16 LoRAs (one at strength 0) on a float32 weight and a 1x1 conv: the weight
    equals W + sum(strength * alpha / rank * up @ down) in float64, written into the same
    tensor; a LoHa next to a LoRA still applies; switching back restores W bit for bit."""
    weights = {"w": rnd(48, 40), "conv": rnd(48, 40, 1, 1), "mixed": rnd(48, 40)}
    before = {k: v.clone() for k, v in weights.items()}
    storage = {k: v.data_ptr() for k, v in weights.items()}

    def lora_mod(rank: int, *in_shape: int) -> lora.Module:
        tensors = {
            "lora_up.weight": rnd(48, rank, *([1, 1] if in_shape else [])).half(),
            "lora_down.weight": rnd(rank, 40, *in_shape).half(),
            "alpha": torch.tensor(float(rank) / 2),
        }
        return _mod("lora", **tensors)

    stack = [(lora_mod(4), 0.8), (lora_mod(8), -0.5), (lora_mod(2), 0.0)]
    convs = [(lora_mod(4, 1, 1), 0.7), (lora_mod(2, 1, 1), 1.2)]
    loha = _mod("loha", hada_w1_a=rnd(48, 2), hada_w1_b=rnd(2, 40), hada_w2_a=rnd(48, 2))
    loha.tensors["hada_w2_b"] = rnd(2, 40)
    changes = {
        "w": [patch.Change(m, s) for m, s in stack],
        "conv": [patch.Change(m, s) for m, s in convs],
        "mixed": [patch.Change(stack[0][0], 0.8), patch.Change(loha, 0.5)],
    }
    patches = patch.PatchSet(weights)
    patches.update(changes)

    def want(key: str, mods: list[tuple[lora.Module, float]]) -> torch.Tensor:
        out = before[key].double().reshape(48, 40)
        for m, s in mods:
            up = m.tensors["lora_up.weight"].double().flatten(1)
            down = m.tensors["lora_down.weight"].double().flatten(1)
            out = out + s * (float(m.tensors["alpha"]) / down.shape[0]) * (up @ down)
        return out

    assert _close(weights["w"], want("w", stack))
    assert _close(weights["conv"].reshape(48, 40), want("conv", convs))
    loha_delta = (loha.tensors["hada_w1_a"].double() @ loha.tensors["hada_w1_b"].double()) * (
        loha.tensors["hada_w2_a"].double() @ loha.tensors["hada_w2_b"].double()
    )
    assert _close(weights["mixed"], want("mixed", stack[:1]) + 0.5 * loha_delta)
    assert {k: v.data_ptr() for k, v in weights.items()} == storage
    patches.update({"w": changes["w"][2:]})  # only the strength-0 LoRA: W itself
    assert all(torch.equal(weights[k], before[k]) for k in weights)


def test_a_lora_whose_up_is_zero_changes_nothing_and_costs_no_product():
    """An untrained module (up all zeros) beside a trained one: the weight is W plus the
    trained one's change alone; with only the zero one, W bit for bit."""
    weights = {"w": rnd(48, 40)}
    before = weights["w"].clone()
    zero = _mod("lora", **{"lora_up.weight": torch.zeros(48, 4), "lora_down.weight": rnd(4, 40)})
    trained = _mod("lora", **{"lora_up.weight": rnd(48, 2), "lora_down.weight": rnd(2, 40)})
    patches = patch.PatchSet(weights)
    patches.update({"w": [patch.Change(zero, 1.0), patch.Change(trained, 0.5)]})
    want = before.double() + 0.5 * (
        trained.tensors["lora_up.weight"].double() @ trained.tensors["lora_down.weight"].double()
    )
    assert _close(weights["w"], want)
    patches.update({"w": [patch.Change(zero, 1.0)]})
    assert torch.equal(weights["w"], before)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_upcast_is_bit_exact_for_every_pair_of_bytes(dtype):
    """The pair table covers every two-byte pattern (NaNs included) and odd sizes fall back
    to the byte table: every value equals torch's own conversion, bit for bit."""
    from adapters.fp8 import upcast

    byte = torch.arange(256, dtype=torch.uint8)
    pairs = torch.stack(torch.meshgrid(byte, byte, indexing="ij"), -1).reshape(512, 256)
    values = pairs.view(dtype)
    for t in (values, values[:, :3], values.reshape(-1)[:7], values.t()):
        got = upcast(t)
        assert got.shape == t.shape and got.dtype == torch.float32
        assert torch.equal(got.view(torch.int32), t.float().view(torch.int32))


def test_stacked_factors_of_mixed_dtypes_equal_the_formula_and_restore_bit_for_bit():
    """Three LoRAs stacked on one float32 weight, their factors in fp16, bf16 and fp8 (fp8
    cannot be concatenated with the others as it is), with alpha, kohya and PEFT scales:
    the weight equals W + sum(strength * scale * up @ down) in float64; an update to the
    same changes writes nothing; restoring gives W's bytes back in the same storage."""
    w = rnd(96, 80)
    original = w.clone()
    weights = {"w": w}
    f8 = torch.float8_e4m3fn
    mods = [
        _mod(
            "lora",
            **{
                "lora_up.weight": rnd(96, 8).half(),
                "lora_down.weight": rnd(8, 80).half(),
                "alpha": torch.tensor(4.0).half(),
            },
        ),
        _mod("lora", **{"lora_up.weight": rnd(96, 4).bfloat16(), "lora_down.weight": rnd(4, 80)}),
        _mod(
            "lora", **{"lora_up.weight": rnd(96, 2).to(f8), "lora_down.weight": rnd(2, 80).to(f8)}
        ),
    ]
    mods[1].scale = 0.25  # a PEFT file's lora_alpha / r
    strengths = [0.8, -1.5, 0.6]
    scales = [4.0 / 8, 0.25, 1.0]
    want = original.double()
    for m, s, k in zip(mods, strengths, scales, strict=True):
        up, down = m.tensors["lora_up.weight"].double(), m.tensors["lora_down.weight"].double()
        want = want + s * k * (up @ down)
    patches = patch.PatchSet(weights)
    changes = {"w": [patch.Change(m, s) for m, s in zip(mods, strengths, strict=True)]}
    assert patches.update(changes) == 1
    assert weights["w"] is w and _close(w, want)
    assert patches.update(changes) == 0
    patches.restore()
    assert weights["w"] is w and w.view(torch.int32).equal(original.view(torch.int32))
