"""Key names of LoRA-family files: split keys into modules and tell each module's algorithm.

Pure Python on names and shapes (no torch), so probes can call it on a safetensors header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_", "lycoris_")
# Parameter names that follow a module name in LoRA-family files, longest first.
PARAM_SUFFIXES = tuple(
    sorted(
        (
            "lora_down.weight",
            "lora_up.weight",
            "lora_mid.weight",
            "lora_A.weight",
            "lora_B.weight",
            "lora.down.weight",
            "lora.up.weight",
            "lora_linear_layer.down.weight",
            "lora_linear_layer.up.weight",
            "lora_magnitude_vector",
            "lora_magnitude_vector.weight",
            "alpha",
            "scale",
            "dora_scale",
            "hada_w1_a",
            "hada_w1_b",
            "hada_w2_a",
            "hada_w2_b",
            "hada_t1",
            "hada_t2",
            "lokr_w1",
            "lokr_w1_a",
            "lokr_w1_b",
            "lokr_w2",
            "lokr_w2_a",
            "lokr_w2_b",
            "lokr_t2",
            "diff",
            "diff_b",
            "on_input",
            "a1.weight",
            "a2.weight",
            "b1.weight",
            "b2.weight",
            "bm.weight",
            "oft_blocks",
            "oft_diag",
            "rescale",
            "w_norm",
            "b_norm",
        ),
        key=len,
        reverse=True,
    )
)
_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
# XLabs Flux LoRAs: ``double_blocks.0.processor.qkv_lora1.down.weight`` (no alpha: scale 1).
_XLABS = re.compile(r"^(.*\.processor\.(?:qkv|proj)_lora[12]?)\.(down|up)\.weight$")

# Algorithm names, as the registry's ``algo`` column stores them.
LORA, LOCON, TUCKER, LOHA, LOKR, FULL, IA3, DORA, GLORA, OFT, BOFT, NORM = (
    "lora",
    "locon",
    "lora-tucker",
    "loha",
    "lokr",
    "full",
    "ia3",
    "dora",
    "glora",
    "oft",
    "boft",
    "norm",
)


@dataclass
class ModuleKeys:
    """The parameters one target module has in an adapter file: name -> shape."""

    name: str
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def has(self, *names: str) -> bool:
        return all(n in self.params for n in names)

    @property
    def down(self) -> tuple[int, ...] | None:
        for n in (
            "lora_down.weight",
            "lora_A.weight",
            "lora.down.weight",
            "lora_linear_layer.down.weight",
        ):
            if n in self.params:
                return self.params[n]
        return None

    @property
    def up(self) -> tuple[int, ...] | None:
        for n in (
            "lora_up.weight",
            "lora_B.weight",
            "lora.up.weight",
            "lora_linear_layer.up.weight",
        ):
            if n in self.params:
                return self.params[n]
        return None


def split_key(key: str) -> tuple[str, str] | None:
    """``(module, param)`` for a LoRA-family key, or None when the key is not one."""
    if key.startswith(KOHYA_PREFIXES):
        module, dot, param = key.partition(".")
        return (module, param) if dot else None
    match = _PROCESSOR.match(key)
    if match:
        return f"{match[1]}.{match[2]}", f"lora.{match[3]}.weight"
    if match := _XLABS.match(key):
        return match[1], f"lora.{match[2]}.weight"
    for suffix in PARAM_SUFFIXES:
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], suffix
    return None


def group_modules(shapes: Mapping[str, Iterable[int]]) -> tuple[dict[str, ModuleKeys], list[str]]:
    """Group keys into modules; also return the keys that belong to no module."""
    modules: dict[str, ModuleKeys] = {}
    stray: list[str] = []
    for key, shape in shapes.items():
        parts = split_key(key)
        if parts is None:
            stray.append(key)
            continue
        module, param = parts
        modules.setdefault(module, ModuleKeys(module)).params[param] = tuple(shape)
    return modules, stray


def module_algo(mod: ModuleKeys) -> str | None:
    """The algorithm of one module from its key set (FORMATS.md order), or None."""
    dora = mod.has("dora_scale") or any(p.startswith("lora_magnitude_vector") for p in mod.params)
    if mod.down is not None or mod.up is not None:  # a lone half is reported as broken
        if dora:
            return DORA
        if mod.has("lora_mid.weight"):
            return TUCKER
        down = mod.down or ()
        return LOCON if len(down) == 4 and (down[2] > 1 or down[3] > 1) else LORA
    if mod.has("hada_w1_a"):
        return DORA if dora else LOHA
    if mod.has("lokr_w1") or mod.has("lokr_w1_a"):
        return DORA if dora else LOKR
    if mod.has("a1.weight", "a2.weight", "b1.weight", "b2.weight"):
        return GLORA
    if mod.has("oft_blocks"):
        return BOFT if len(mod.params["oft_blocks"]) == 4 else OFT
    if mod.has("diff"):
        return FULL
    if mod.has("on_input"):
        return IA3
    if mod.has("w_norm") or mod.has("b_norm"):
        return NORM
    return None


# When a file mixes algorithms, the file's algo is the first of these its modules use.
FILE_ALGO_ORDER = (DORA, LOKR, LOHA, GLORA, BOFT, OFT, TUCKER, LOCON, IA3, LORA, FULL, NORM)


def missing_parts(mod: ModuleKeys, algo: str) -> str | None:
    """Why a module of ``algo`` is incomplete, or None when it has what the math needs."""
    need = {
        LORA: (),
        LOCON: (),
        TUCKER: (),
        DORA: (),
        LOHA: ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    }.get(algo, ())
    absent = [n for n in need if n not in mod.params]
    if algo in (LORA, LOCON, TUCKER) or (algo == DORA and mod.down is not None):
        down, up = mod.down, mod.up
        if down is None or up is None:
            return "has only one of the down/up pair"
        if up[1] != down[0]:
            return f"rank mismatch: up {list(up)} against down {list(down)}"
    if algo == LOKR and not (mod.has("lokr_w2") or mod.has("lokr_w2_a", "lokr_w2_b")):
        return "has lokr_w1 but no lokr_w2"
    return f"lacks {', '.join(absent)}" if absent else None


def in_features(mod: ModuleKeys, algo: str) -> int | None:
    """Input width of the target module implied by the adapter's shapes, where it shows."""
    p = mod.params
    if mod.down is not None:
        return mod.down[1]
    if algo in (LOHA, DORA) and "hada_w1_b" in p:
        return p["hada_w1_b"][1]
    if algo in (LOKR, DORA) and (mod.has("lokr_w1") or mod.has("lokr_w1_b")):
        c = p["lokr_w1"][1] if "lokr_w1" in p else p["lokr_w1_b"][1]
        w2 = p.get("lokr_w2") or p.get("lokr_w2_b")
        if w2 is None or len(w2) < 2:
            return None
        return c * w2[1]
    if algo == FULL:
        return p["diff"][1] if len(p["diff"]) >= 2 else None
    if algo == GLORA:
        return p["a1.weight"][0]
    return None
