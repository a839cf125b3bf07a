"""The LoRA family as typed adapters, and the weight change of each module (FORMATS.md §4).

Every delta is computed in float32 on the weight's device, already multiplied by the module's
own scale (``alpha / r`` and the like) but not by the user's strength. Patching adds
``strength * delta`` to the weight, so merging and inference share these functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from adapters import keys as lk
from adapters.fp8 import upcast


class AdapterError(ValueError):
    """An adapter file the math cannot use (names the module and the reason)."""


@dataclass
class Module:
    """One target module's tensors in an adapter file."""

    name: str
    algo: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    scale: float | None = None  # the file's own scale when its tensors carry none (PEFT)

    def t(self, key: str) -> torch.Tensor:
        return self.tensors[key].float()

    def has(self, key: str) -> bool:
        return key in self.tensors

    @property
    def is_text(self) -> bool:
        return self.name.startswith(("lora_te", "text_encoder"))


@dataclass
class Adapter:
    """A parsed LoRA-family file: its modules by name."""

    modules: dict[str, Module]
    algo: str
    # the modules as parsed, kept when ``modules`` is recut to one model's layout (row
    # slices), so that the same adapter can be fitted to another layout later
    parsed: dict[str, Module] | None = None


def parse(
    state: Mapping[str, torch.Tensor], peft_config: Mapping[str, Any] | None = None
) -> Adapter:
    """Group an adapter state dict into modules and tell each one's algorithm; PEFT modules
    take their scale from ``peft_config`` (diffusers' ``lora_adapter_metadata``) if given."""
    groups, stray = lk.group_modules({k: tuple(v.shape) for k, v in state.items()})
    if stray:
        raise AdapterError(f"{len(stray)} keys belong to no adapter module, e.g. {stray[0]}")
    source = {lk.split_key(k): k for k in state}  # processor/XLabs keys are renamed
    modules: dict[str, Module] = {}
    for name, keys in groups.items():
        algo = lk.module_algo(keys)
        if algo is None:
            raise AdapterError(f"module {name}: no known algorithm ({', '.join(keys.params)})")
        problem = lk.missing_parts(keys, algo)
        if problem:
            raise AdapterError(f"{algo} module {name} {problem}")
        tensors = {_canonical(p): state[source[name, p]] for p in keys.params}
        modules[name] = Module(name, algo, tensors)
        if peft_config:
            modules[name].scale = peft_scale(peft_config, modules[name])
    used = {m.algo for m in modules.values()}
    return Adapter(modules, next((a for a in lk.FILE_ALGO_ORDER if a in used), lk.LORA))


PEFT_DEFAULTS = {"r": 8, "lora_alpha": 8}  # peft's LoraConfig, for fields a file omits


def peft_scale(config: Mapping[str, Any], mod: Module) -> float | None:
    """PEFT's scale of one module of a diffusers-saved file: ``lora_alpha / r`` (``/ sqrt(r)``
    with ``use_rslora``), each value from the first ``alpha_pattern`` / ``rank_pattern`` key
    that matches the module's name as peft matches it; None when ``config`` (the file's
    ``lora_adapter_metadata``, keys ``<component>.<field>``) says nothing of its component."""
    component, _, inner = mod.name.partition(".")
    fields = {
        k.removeprefix(component + "."): v
        for k, v in config.items()
        if k.startswith(component + ".")
    }
    if not fields:
        return None
    dora = mod.algo == lk.DORA
    if mod.algo not in (lk.LORA, lk.LOCON, lk.DORA) or (dora and not mod.has("lora_down.weight")):
        raise AdapterError(f"{mod.name}: PEFT metadata for {mod.algo} modules is not supported")
    if bool(fields.get("use_dora")) != dora:
        raise AdapterError(
            f"{mod.name}: the metadata says use_dora={bool(fields.get('use_dora'))} but the "
            f"module {'has' if dora else 'lacks'} a lora_magnitude_vector"
        )
    rank = mod.tensors["lora_down.weight"].shape[0]
    r = _pattern_value(fields.get("rank_pattern"), inner, fields.get("r", PEFT_DEFAULTS["r"]))
    alpha = _pattern_value(
        fields.get("alpha_pattern"), inner, fields.get("lora_alpha", PEFT_DEFAULTS["lora_alpha"])
    )
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (r, alpha)):
        raise AdapterError(f"{mod.name}: the metadata's rank {r!r} or alpha {alpha!r} is no number")
    if r != rank:
        raise AdapterError(f"{mod.name}: the metadata gives rank {r}, the tensors rank {rank}")
    return float(alpha) / (math.sqrt(rank) if fields.get("use_rslora") else rank)


def _pattern_value(pattern: Mapping[str, Any] | None, name: str, default: Any) -> Any:
    """peft's lookup: the first key that, as a regex, matches the end of the module name at a
    dot. A text encoder's name is tried with and without ``text_model.`` (transformers 5
    dropped it)."""
    if not isinstance(pattern, Mapping | None):
        raise AdapterError(f"metadata pattern {pattern!r} is not a JSON object")
    short = name.removeprefix("text_model.")
    for key, value in (pattern or {}).items():
        try:
            if any(re.match(rf"(.*\.)?({key})$", n) for n in (short, "text_model." + short)):
                return value
        except re.error as exc:
            raise AdapterError(f"metadata pattern {key!r} is not a valid regex ({exc})") from None
    return default


def _canonical(param: str) -> str:
    """One spelling per tensor role across kohya, PEFT and old diffusers files."""
    return {
        "lora_A.weight": "lora_down.weight",
        "lora_B.weight": "lora_up.weight",
        "lora.down.weight": "lora_down.weight",
        "lora.up.weight": "lora_up.weight",
        "lora_linear_layer.down.weight": "lora_down.weight",
        "lora_linear_layer.up.weight": "lora_up.weight",
        "lora_magnitude_vector": "dora_scale",
        "lora_magnitude_vector.weight": "dora_scale",
    }.get(param, param)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def alpha_scale(mod: Module, rank: int) -> float:
    """The module's own multiplier: PEFT's from the file's metadata, else kohya's
    ``alpha / rank`` (1 without alpha)."""
    if mod.scale is not None:
        return mod.scale
    if mod.has("scale"):
        return float(mod.tensors["scale"].item())
    if mod.has("alpha"):
        alpha = float(mod.tensors["alpha"].item())
        return alpha / rank if alpha else 1.0
    return 1.0


def _tucker(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """P[o,i,...] = sum_{p,q} t[p,q,...] * a[p,o] * b[q,i]."""
    return torch.einsum("pq...,po,qi->oi...", t, a, b)


def lora_delta(mod: Module, shape: torch.Size) -> torch.Tensor:
    up, down = mod.t("lora_up.weight"), mod.t("lora_down.weight")
    rank = down.shape[0]
    if mod.has("lora_mid.weight"):
        mid = mod.t("lora_mid.weight")
        delta = _tucker(mid, _flat(up).T, _flat(down))
    elif down.dim() == 4 and len(shape) == 4 and (down.shape[2] > 1 or down.shape[3] > 1):
        delta = torch.einsum("or,rikl->oikl", _flat(up), down)
    else:
        delta = _flat(up) @ _flat(down)
    return delta.reshape(shape) * alpha_scale(mod, rank)


def loha_delta(mod: Module, shape: torch.Size) -> torch.Tensor:
    rank = mod.tensors["hada_w1_b"].shape[0]
    if mod.has("hada_t1"):
        p1 = _tucker(mod.t("hada_t1"), mod.t("hada_w1_a"), mod.t("hada_w1_b"))
        p2 = _tucker(mod.t("hada_t2"), mod.t("hada_w2_a"), mod.t("hada_w2_b"))
    else:
        p1 = mod.t("hada_w1_a") @ mod.t("hada_w1_b")
        p2 = mod.t("hada_w2_a") @ mod.t("hada_w2_b")
    return (p1 * p2).reshape(shape) * alpha_scale(mod, rank)


def lokr_delta(mod: Module, shape: torch.Size) -> torch.Tensor:
    rank = None
    if mod.has("lokr_w1"):
        w1 = mod.t("lokr_w1")
    else:
        w1 = mod.t("lokr_w1_a") @ mod.t("lokr_w1_b")
        rank = mod.tensors["lokr_w1_b"].shape[0]
    if mod.has("lokr_w2"):
        w2 = mod.t("lokr_w2")
    elif mod.has("lokr_t2"):
        w2 = _tucker(mod.t("lokr_t2"), mod.t("lokr_w2_a"), mod.t("lokr_w2_b"))
        rank = mod.tensors["lokr_w2_b"].shape[0]
    else:
        w2 = mod.t("lokr_w2_a") @ mod.t("lokr_w2_b")
        rank = mod.tensors["lokr_w2_b"].shape[0]
    if w2.dim() == 4:
        w1 = w1.unsqueeze(2).unsqueeze(3)
    scale = 1.0 if rank is None else alpha_scale(mod, rank)
    return torch.kron(w1, w2).reshape(shape) * scale


def full_delta(mod: Module, shape: torch.Size) -> torch.Tensor:
    return mod.t("diff").reshape(shape)


def ia3_delta(mod: Module, weight: torch.Tensor) -> torch.Tensor:
    w = mod.t("weight")
    view = [1] * weight.dim()
    if int(mod.tensors["on_input"].item()):
        view[1] = -1
    else:
        view[0] = -1
    return weight * w.reshape(view)


def dora_delta(mod: Module, weight: torch.Tensor) -> torch.Tensor:
    """W' - W for DoRA at strength 1 (A1111/ComfyUI interpolate ``W + m·(W'-W)``)."""
    base = {k: v for k, v in mod.tensors.items() if k != "dora_scale"}
    inner = Module(mod.name, _inner_algo(base), base, mod.scale)
    v = weight + DELTAS[inner.algo](inner, weight.shape)
    scale = mod.t("dora_scale")
    if scale.dim() == 1:  # PEFT lora_magnitude_vector: per output row
        scale = scale.reshape(-1, *([1] * (weight.dim() - 1)))
    if scale.shape[0] == weight.shape[0] and (scale.dim() == 1 or scale.shape[1] == 1):
        dims = tuple(range(1, weight.dim()))  # norm per output row
    else:
        dims = (0, *range(2, weight.dim()))  # norm per input column
    norm = v.norm(dim=dims, keepdim=True)
    return v * (scale.reshape(norm.shape) / norm) - weight


def _inner_algo(tensors: dict[str, torch.Tensor]) -> str:
    if "hada_w1_a" in tensors:
        return lk.LOHA
    if "lokr_w1" in tensors or "lokr_w1_a" in tensors:
        return lk.LOKR
    return lk.LORA


def glora_delta(mod: Module, weight: torch.Tensor) -> torch.Tensor:
    a1, a2, b1, b2 = (mod.t(k) for k in ("a1.weight", "a2.weight", "b1.weight", "b2.weight"))
    flat_w = _flat(weight)
    if a1.shape[0] == flat_w.shape[1]:  # current LyCORIS layout
        rank = a2.shape[0]
        delta = flat_w @ a1 @ a2 + b1 @ b2
    else:  # the older, transposed layout
        rank = a1.shape[0]
        delta = b2 @ b1 + flat_w @ a2 @ a1
    return delta.reshape(weight.shape) * alpha_scale(mod, rank)


def oft_delta(mod: Module, weight: torch.Tensor) -> torch.Tensor:
    blocks = mod.t("oft_blocks")
    n, b, _ = blocks.shape
    q = blocks - blocks.transpose(1, 2)
    constraint = float(mod.t("alpha")) if mod.has("alpha") else 0.0
    if constraint > 0:
        limit = constraint * weight.shape[0]
        norm = q.norm()
        if norm > limit:
            q = q * (limit / norm)
    eye = torch.eye(b, device=q.device)
    r = (eye + q) @ torch.linalg.inv(eye - q)
    flat = _flat(weight).reshape(n, b, -1)
    rotated = torch.einsum("nab,nai->nbi", r, flat).reshape(weight.shape)
    if mod.has("rescale"):
        rotated = rotated * mod.t("rescale").reshape(-1, *([1] * (weight.dim() - 1)))
    return rotated - weight


def bias_module(mod: Module) -> Module:
    """A module's bias change (LyCORIS ``diff_b``, added at the module's strength as A1111's
    full network and ComfyUI do) as a full-diff module of its own."""
    return Module(mod.name, lk.FULL, {"diff": mod.tensors["diff_b"]})


def norm_delta(mod: Module, shape: torch.Size) -> torch.Tensor:
    return mod.t("w_norm").reshape(shape)


DELTAS = {
    lk.LORA: lora_delta,
    lk.LOCON: lora_delta,
    lk.TUCKER: lora_delta,
    lk.LOHA: loha_delta,
    lk.LOKR: lokr_delta,
    lk.FULL: full_delta,
    lk.NORM: norm_delta,
}
NEEDS_WEIGHT = {lk.IA3: ia3_delta, lk.DORA: dora_delta, lk.GLORA: glora_delta, lk.OFT: oft_delta}


def delta(mod: Module, weight: torch.Tensor) -> torch.Tensor:
    """The change of ``weight`` this module makes at strength 1, in float32."""
    w = weight.float()
    if mod.algo in NEEDS_WEIGHT:
        out = NEEDS_WEIGHT[mod.algo](mod, w)
    elif mod.algo in DELTAS:
        fn = DELTAS[mod.algo]
        try:
            out = fn(mod, w.shape)
        except RuntimeError as exc:
            raise AdapterError(
                f"{mod.name}: {mod.algo} tensors do not fit a weight of shape "
                f"{list(w.shape)} ({exc})"
            ) from None
    else:
        raise AdapterError(f"{mod.name}: algorithm {mod.algo} is not supported")
    if out.shape != w.shape or out.numel() != w.numel():
        raise AdapterError(
            f"{mod.name}: delta of {out.numel()} elements for a weight of shape {list(w.shape)}"
        )
    return out


def _plain_lora(mod: Module, ndim: int) -> bool:
    """A LoRA whose delta on a weight of ``ndim`` dimensions is one matrix product (Linear,
    or 1x1 conv on either side)."""
    if mod.algo != lk.LORA or mod.has("lora_mid.weight"):
        return False
    down = mod.tensors["lora_down.weight"]
    return down.dim() == 2 or ndim != 4 or down.shape[2:] == (1, 1)


def plain_lora_fits(mod: Module, shape: Sequence[int]) -> bool | None:
    """Whether a plain LoRA's ``up @ down`` fits a weight of ``shape`` (rows = up's rows,
    columns = everything after down's rank), from the shapes alone; None for every other
    module, whose fit takes computing its delta."""
    if not _plain_lora(mod, len(shape)):
        return None
    up, down = mod.tensors["lora_up.weight"], mod.tensors["lora_down.weight"]
    return (
        math.prod(up.shape[1:]) == down.shape[0]
        and up.shape[0] == shape[0]
        and math.prod(down.shape[1:]) == math.prod(shape[1:])
    )


def apply(weight: torch.Tensor, changes: list[tuple[Module, float]]) -> torch.Tensor:
    """``weight`` with each module's delta added at its strength (float32 math, then the
    weight's dtype). Plain LoRAs add ``up @ down`` in one fused multiply-add; DoRA modules
    apply one at a time, in order, on the running weight."""
    w = upcast(weight)
    for mod, strength in changes:
        if strength == 0:
            continue
        if _plain_lora(mod, w.dim()):
            up, down = _flat(mod.t("lora_up.weight")), _flat(mod.t("lora_down.weight"))
            scale = strength * alpha_scale(mod, down.shape[0])
            w.view(w.shape[0], -1).addmm_(up.float(), down.float(), alpha=scale)
        else:
            w += strength * delta(mod, w if mod.algo == lk.DORA else weight.float())
    return w.to(weight.dtype)
