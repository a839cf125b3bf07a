"""Built-in identification probes: checkpoints, diffusers folders, VAEs, the LoRA family and
textual-inversion embeddings, all from the safetensors header (or folder configs) alone.

Base rules key on topology and context width, never on absolute channel counts.
"""

from __future__ import annotations

import math
import re

from adapters import keys as lk
from hub import hookimpl
from hub.core import dit_keys
from hub.core.taxonomy import Base, Format, Kind
from hub.plugins.probing import Subject, Verdict

UNET = "model.diffusion_model."
CONTEXT_BASE = {768: Base.SD1, 1024: Base.SD2, 2048: Base.SDXL, 1280: Base.SDXL_REFINER}
ADM_BASE = {2816: Base.SDXL, 2560: Base.SDXL_REFINER}
IN_CHANNEL_VARIANT = {9: "inpaint", 8: "instruct", 5: "depth"}
TEXT_WIDTH_BASE = {768: Base.SD1, 1024: Base.SD2}


def _prediction(subject: Subject) -> str | None:
    meta = subject.metadata.get("modelspec.prediction_type", "").lower()
    if "v_pred" in subject.keys or meta in ("v", "v_prediction"):
        return "v"
    return "epsilon" if meta == "epsilon" else None


def checkpoint_probe(subject: Subject) -> Verdict:
    keys = subject.keys
    unet = [k for k in keys if k.startswith(UNET)]
    if not unet:
        return Verdict("checkpoint", False, f"no {UNET}* keys")
    if any(k.startswith((UNET + "joint_blocks.", UNET + "double_blocks.")) for k in unet):
        return Verdict("checkpoint", False, "a Flux/SD3 transformer, not a UNet (see dit_probes)")
    to_k = sorted(k for k in unet if k.endswith("attn2.to_k.weight"))
    if not to_k:
        return Verdict(
            "checkpoint",
            True,
            "UNet keys but no cross-attention to_k: base unknown",
            Kind.CHECKPOINT,
            Base.UNKNOWN,
            "ldm",
            score=100,
        )
    width = keys[to_k[0]][1]
    base = CONTEXT_BASE.get(width, Base.UNKNOWN)
    reasons = [f"context width {width} from {to_k[0]} -> {base}"]
    adm = keys.get(UNET + "label_emb.0.0.weight")
    if adm is not None and adm[1] in ADM_BASE and ADM_BASE[adm[1]] is not base:
        reasons.append(f"adm_in_channels {adm[1]} disagrees")
    if base is Base.SDXL and not any(k.startswith("conditioner.embedders.1.") for k in keys):
        reasons.append("no conditioner.embedders.1 (UNet-only or text encoders stripped)")
    channels = keys.get(UNET + "input_blocks.0.0.weight", (0, 4))[1]
    variant = IN_CHANNEL_VARIANT.get(channels)
    if variant:
        reasons.append(f"{channels} UNet input channels -> {variant}")
    prediction = _prediction(subject)
    if prediction:
        reasons.append(f"prediction {prediction} from the file")
    return Verdict(
        "checkpoint",
        True,
        "; ".join(reasons),
        Kind.CHECKPOINT,
        base,
        "ldm",
        variant=variant,
        prediction=prediction,
        score=100,
    )


def diffusers_folder_probe(subject: Subject) -> Verdict:
    folder = subject.folder
    if subject.format is not Format.DIFFUSERS or not folder:
        return Verdict("diffusers_folder", False, "not a diffusers folder")
    index = folder.get("model_index.json", {})
    pipeline = index.get("_class_name", "?")
    unet = folder.get("unet/config.json")
    if not unet:
        return Verdict(
            "diffusers_folder",
            True,
            f"{pipeline} folder without unet/config.json",
            Kind.CHECKPOINT,
            Base.UNKNOWN,
            "diffusers",
            score=100,
        )
    width = unet.get("cross_attention_dim")
    width = width[0] if isinstance(width, list) else width
    base = CONTEXT_BASE.get(width, Base.UNKNOWN)
    channels = unet.get("in_channels", 4)
    variant = IN_CHANNEL_VARIANT.get(channels)
    reason = f"{pipeline}: unet cross_attention_dim {width} -> {base}"
    prediction = None
    sched = subject.path / "scheduler" / "scheduler_config.json"
    if sched.is_file() and '"v_prediction"' in sched.read_text(encoding="utf-8", errors="ignore"):
        prediction = "v"
    return Verdict(
        "diffusers_folder",
        True,
        reason,
        Kind.CHECKPOINT,
        base,
        "diffusers",
        variant=variant,
        prediction=prediction,
        score=100,
    )


FLUX_SD3_LATENT = 16
_VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def vae_probe(subject: Subject) -> Verdict:
    keys = subject.keys
    if not keys:
        return Verdict("vae", False, "no tensors")
    strip = next(
        (p for p in ("first_stage_model.", "vae.") if all(k.startswith(p) for k in keys)), ""
    )
    names = [k[len(strip) :] for k in keys]
    if not all(n.startswith(_VAE_PREFIXES) for n in names):
        return Verdict("vae", False, "keys outside encoder./decoder./quant_conv.")
    if not any(n.startswith("decoder.") for n in names):
        return Verdict("vae", False, "no decoder.* keys")
    layout = "diffusers" if any(n.startswith("decoder.up_blocks.") for n in names) else "ldm"
    latent = keys.get(strip + "post_quant_conv.weight") or keys.get(
        strip + "decoder.conv_in.weight"
    )
    reason = f"{layout} autoencoder keys" + (f", {latent[1]} latent channels" if latent else "")
    if latent and latent[1] == FLUX_SD3_LATENT:
        # Flux's and SD3's VAEs share one 16-channel architecture (no quant convs).
        return Verdict(
            "vae",
            True,
            reason + ": a Flux/SD3 VAE",
            Kind.VAE,
            Base.UNKNOWN,
            layout,
            variant="16-channel",
            score=70,
        )
    # SD1, SD2 and SDXL VAEs share one architecture: the weights do not tell the base.
    return Verdict(
        "vae",
        True,
        reason + "; base not told by the architecture",
        Kind.VAE,
        Base.UNKNOWN,
        layout,
        score=70,
    )


def _lora_layout(names: list[str]) -> str:
    if any(n.startswith(lk.KOHYA_PREFIXES) for n in names):
        return "kohya"
    if any(dit_keys.XLABS_LORA.match(n) for n in names):
        return "xlabs"
    return "peft" if any(".lora_A" in n or ".lora_B" in n for n in names) else "diffusers"


# Where a module's shapes show a width: UNet cross-attention to_k/to_v take the context in;
# CLIP attention projections are hidden x hidden, mlp.fc1 takes hidden in, mlp.fc2 gives it out.
_CONTEXT_IN = re.compile(r"attn2[._]to_[kv]$")
_TE_SQUARE = re.compile(r"self_attn[._][qkv]_proj$|self_attn[._]out_proj$")
_TE_IN = re.compile(r"mlp[._]fc1$")
_TE_OUT = re.compile(r"mlp[._]fc2$")
_IN_PARAMS = (
    "lora_down.weight",
    "lora_A.weight",
    "lora.down.weight",
    "lora_linear_layer.down.weight",
    "hada_w1_b",
    "lokr_w2_b",
    "lokr_w2",
    "diff",
    "a1.weight",
)
_OUT_PARAMS = (
    "lora_up.weight",
    "lora_B.weight",
    "lora.up.weight",
    "lora_linear_layer.up.weight",
    "hada_w1_a",
    "diff",
)
# Text encoder module prefixes; the second names one encoder of a two-encoder model (SDXL).
_FIRST_TE = ("lora_te_", "lora_te1_", "text_encoder.")
_SECOND_TE = ("lora_te2_", "text_encoder_2.")
_THIRD_TE = ("lora_te3_", "text_encoder_3.")
SDXL_TE1_WIDTH, SDXL_TE2_WIDTH = {768: Base.SDXL}, {1280: Base.SDXL}  # CLIP-L, OpenCLIP-bigG


def _in_width(mod: lk.ModuleKeys, algo: str) -> tuple[str, int] | None:
    width = lk.in_features(mod, algo)
    param = next((p for p in _IN_PARAMS if p in mod.params), None)
    return (param, width) if width and param else None


def _out_width(mod: lk.ModuleKeys) -> tuple[str, int] | None:
    param = next((p for p in _OUT_PARAMS if p in mod.params), None)
    return (param, mod.params[param][0]) if param and mod.params[param] else None


def _text_widths(mod: lk.ModuleKeys, algo: str) -> list[tuple[str, int]]:
    """(parameter, hidden width) for each of a text-encoder module's tensors showing it."""
    square = bool(_TE_SQUARE.search(mod.name))
    if algo == lk.IA3:  # one scale per input or output: both are the width on a square layer
        shape = mod.params.get("weight")
        return [("weight", math.prod(shape))] if square and shape else []
    found = []
    if square or _TE_IN.search(mod.name):
        found.append(_in_width(mod, algo))
    if square or _TE_OUT.search(mod.name):
        found.append(_out_width(mod))
    return [f for f in found if f]


def _key_of(subject: Subject, module: str, param: str) -> str:
    """The file's tensor name for ``module``'s ``param`` (processor keys are renamed)."""
    key = f"{module}.{param}"
    if key in subject.keys:
        return key
    return next((k for k in subject.keys if lk.split_key(k) == (module, param)), key)


Evidence = tuple[Base, str]


def _weigh(label: str, readings: list[tuple[str, int]], table: dict[int, Base]) -> list[Evidence]:
    """One piece of evidence per width seen, naming a tensor that shows it."""
    out = []
    for width in sorted({w for _, w in readings}):
        keys = [k for k, w in readings if w == width]
        more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
        base = table.get(width, Base.UNKNOWN)
        out.append((base, f"{label} width {width} from {keys[0]}{more} -> {base}"))
    return out


def _width_evidence(
    subject: Subject, modules: dict[str, lk.ModuleKeys], algos: dict[str, str]
) -> list[Evidence]:
    """Every base evidence the adapter's shapes carry: UNet context width, text widths."""
    context, first, second = [], [], []
    for name in sorted(modules):
        mod, algo = modules[name], algos[name]
        if _CONTEXT_IN.search(name) and (found := _in_width(mod, algo)):
            context.append((_key_of(subject, name, found[0]), found[1]))
        elif name.startswith(_FIRST_TE + _SECOND_TE):
            readings = second if name.startswith(_SECOND_TE) else first
            for param, width in _text_widths(mod, algo):
                readings.append((_key_of(subject, name, param), width))
    unet_bases = {**CONTEXT_BASE, 1280: Base.UNKNOWN}  # an SDXL-refiner add-on is not told
    evidence = _weigh("UNet cross-attention context", context, unet_bases)
    te2 = next((n for n in sorted(modules) if n.startswith(_SECOND_TE)), None)
    if te2:
        evidence += _weigh("first text encoder (of two)", first, SDXL_TE1_WIDTH)
        evidence += _weigh("second text encoder", second, SDXL_TE2_WIDTH)
        if not second:
            param = min(modules[te2].params, key=lambda p: (p in ("alpha", "scale"), p))
            key = _key_of(subject, te2, param)
            evidence.append((Base.SDXL, f"a second text encoder ({key}) -> sdxl"))
    else:
        evidence += _weigh("text encoder", first, TEXT_WIDTH_BASE)
    if te3 := next((n for n in sorted(modules) if n.startswith(_THIRD_TE)), None):
        evidence.append((Base.UNKNOWN, f"a third text encoder ({te3}: SD3/Flux) -> unknown"))
    return evidence


def _lora_base(
    subject: Subject, modules: dict[str, lk.ModuleKeys], algos: dict[str, str]
) -> tuple[Base, str]:
    widths = {name: lk.in_features(mod, algos[name]) for name, mod in modules.items()}
    if dit := dit_keys.lora_base(widths):
        return Base(dit[0]), dit[1]
    evidence = _width_evidence(subject, modules, algos)
    if evidence:
        bases = {base for base, _ in evidence}
        why = "; ".join(reason for _, reason in evidence)
        return (bases.pop(), why) if len(bases) == 1 else (Base.UNKNOWN, f"disagreeing: {why}")
    hint = subject.metadata.get("ss_base_model_version", "")
    arch = subject.metadata.get("modelspec.architecture", "")
    if hint.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
        return Base.SDXL, "no width evidence; kohya metadata says sdxl"
    if hint.startswith("sd_v2") or subject.metadata.get("ss_v2") == "True":
        return Base.SD2, "no width evidence; kohya metadata says sd2"
    if hint.startswith("sd_v1") or arch.startswith("stable-diffusion-v1"):
        return Base.SD1, "no width evidence; kohya metadata says sd1"
    return Base.UNKNOWN, "no width evidence for the base"


def lora_probe(subject: Subject) -> Verdict:
    keys = subject.keys
    if not keys:
        return Verdict("lora", False, "no tensors")
    modules, stray = lk.group_modules(keys)
    if not modules:
        return Verdict("lora", False, "no LoRA-family keys")
    if len(stray) > len(keys) // 2:
        return Verdict("lora", False, f"{len(stray)} of {len(keys)} keys are not adapter keys")
    algos: dict[str, str] = {}
    for name, mod in modules.items():
        algo = lk.module_algo(mod)
        if algo is None:
            return Verdict(
                "lora",
                True,
                f"module {name} has no known algorithm ({', '.join(sorted(mod.params))})",
                Kind.LORA,
                broken=True,
                score=90,
            )
        problem = lk.missing_parts(mod, algo)
        if problem:
            return Verdict(
                "lora", True, f"{algo} module {name} {problem}", Kind.LORA, broken=True, score=90
            )
        algos[name] = algo
    used = set(algos.values())
    algo = next(a for a in lk.FILE_ALGO_ORDER if a in used)
    base, why = _lora_base(subject, modules, algos)
    layout = _lora_layout(list(keys))
    reason = f"{len(modules)} {layout} modules, algo {algo}; {why}"
    return Verdict("lora", True, reason, Kind.LORA, base, layout, algo=algo, score=90)


def embedding_probe(subject: Subject) -> Verdict:
    keys = subject.keys
    if "clip_l" in keys and "clip_g" in keys:
        n_l, n_g = keys["clip_l"][0], keys["clip_g"][0]
        if len(keys) != 2 or keys["clip_l"][-1] != 768 or keys["clip_g"][-1] != 1280:
            return Verdict(
                "embedding",
                True,
                "clip_l/clip_g pair with unexpected widths",
                Kind.EMBEDDING,
                broken=True,
                score=80,
            )
        if n_l != n_g:
            return Verdict(
                "embedding",
                True,
                f"clip_l has {n_l} vectors, clip_g {n_g}",
                Kind.EMBEDDING,
                broken=True,
                score=80,
            )
        return Verdict(
            "embedding",
            True,
            f"SDXL clip_l/clip_g pair, {n_l} vectors",
            Kind.EMBEDDING,
            Base.SDXL,
            "sdxl-pair",
            score=80,
        )
    if len(keys) != 1:
        return Verdict("embedding", False, f"{len(keys)} tensors (an embedding has one, or a pair)")
    ((name, shape),) = keys.items()
    if len(shape) not in (1, 2) or shape[-1] not in (768, 1024, 1280):
        return Verdict(
            "embedding", False, f"one tensor {name}{list(shape)}, not an embedding shape"
        )
    vectors = shape[0] if len(shape) == 2 else 1
    base = TEXT_WIDTH_BASE.get(shape[-1], Base.UNKNOWN)
    layout = (
        "a1111" if name == "emb_params" or name.startswith("string_to_param.") else ("diffusers")
    )
    return Verdict(
        "embedding",
        True,
        f"{layout} embedding: {vectors} vectors of width {shape[-1]} -> {base}",
        Kind.EMBEDDING,
        base,
        layout,
        score=80,
    )


_HYPERNET_KEY = re.compile(r"^(\d+)\.([01])\.(linear\.\d+|linear[12])\.(weight|bias)$")
HYPERNET_BASE = {768: Base.SD1, 1024: Base.SD2, 2048: Base.SDXL}


def hypernetwork_probe(subject: Subject) -> Verdict:
    keys = subject.keys
    if not keys or not all(_HYPERNET_KEY.match(k) for k in keys):
        return Verdict("hypernetwork", False, "keys are not <width>.<0|1>.linear.* modules")
    widths = sorted({int(k.split(".", 1)[0]) for k in keys})
    for key, shape in keys.items():
        width = int(key.split(".", 1)[0])
        if key.endswith("weight") and (
            len(shape) != 2
            or width not in (shape[0], shape[1])
            and key.split(".")[3] in ("0", "linear1")
        ):
            return Verdict(
                "hypernetwork",
                True,
                f"{key}{list(shape)} does not fit width {width}",
                Kind.HYPERNETWORK,
                broken=True,
                score=85,
            )
    context = [w for w in widths if w in HYPERNET_BASE]
    base = HYPERNET_BASE[context[-1]] if context else Base.UNKNOWN
    return Verdict(
        "hypernetwork",
        True,
        f"A1111 hypernetwork for widths {widths} -> {base}",
        Kind.HYPERNETWORK,
        base,
        "a1111",
        score=85,
    )


@hookimpl(trylast=True)
def register_probes(register):
    register("checkpoint", checkpoint_probe)
    register("diffusers_folder", diffusers_folder_probe)
    register("vae", vae_probe)
    register("lora", lora_probe)
    register("embedding", embedding_probe)
    register("hypernetwork", hypernetwork_probe)
