"""Flux.1 transformer key layouts: BFL/ComfyUI (``double_blocks.N.img_attn.qkv``, fused q/k/v
and ``linear1``) and diffusers (``transformer_blocks.N.attn.to_q``, split), the map between
them, and the model's geometry read from tensor shapes (never the full-size constants
3072/12288 diffusers' own converter assumes).

Facts (sources: diffusers 0.42 ``convert_flux_transformer_checkpoint_to_diffusers`` and
``lora_conversion_utils`` — read, not copied; tests/test_flux.py checks this map against the
former at full size): BFL ``img_attn.qkv``/``txt_attn.qkv`` rows are q, k, v (hidden each);
``single_blocks.N.linear1`` rows are q, k, v then the MLP input (mlp = 4 x hidden);
``linear2`` is diffusers' single-block ``proj_out``; RMSNorm ``.scale`` is diffusers'
``.weight``; ``guidance_in`` exists in dev only.

A diffusers module lands in a BFL file as a weight key and, for fused tensors, a row range;
``norm_out.linear`` is the one module whose halves are swapped (diffusers stores scale then
shift, BFL shift then scale), so its rows map in two pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.core.dit_map import (
    KeyMap,
    Piece,
    PiecesOf,
    Shapes,
    adapter_targets,
    diffusers_from_original,
    module_tables,
    original_from_diffusers,
    swapped_halves,
    thirds,
)

# Prefixes a BFL-layout transformer carries in the wild: none (BFL's flux1-dev.safetensors),
# ComfyUI's full checkpoints, and some trainers' saves.
BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
DOUBLE = re.compile(r"^double_blocks\.(\d+)\.")
SINGLE = re.compile(r"^single_blocks\.(\d+)\.")
DIFFUSERS_DOUBLE = re.compile(r"^transformer_blocks\.(\d+)\.")
DIFFUSERS_SINGLE = re.compile(r"^single_transformer_blocks\.(\d+)\.")

# Top-level modules: diffusers name -> BFL name.
_TOP = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
# Double-block modules: diffusers name -> (BFL name, index of the third of a fused qkv).
_DOUBLE = {
    "norm1.linear": ("img_mod.lin", None),
    "norm1_context.linear": ("txt_mod.lin", None),
    "attn.to_q": ("img_attn.qkv", 0),
    "attn.to_k": ("img_attn.qkv", 1),
    "attn.to_v": ("img_attn.qkv", 2),
    "attn.add_q_proj": ("txt_attn.qkv", 0),
    "attn.add_k_proj": ("txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn.qkv", 2),
    "attn.to_out.0": ("img_attn.proj", None),
    "attn.to_add_out": ("txt_attn.proj", None),
    "ff.net.0.proj": ("img_mlp.0", None),
    "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None),
    "ff_context.net.2": ("txt_mlp.2", None),
}
# RMSNorm scales: diffusers ``<m>.weight`` is BFL ``<m>.scale``.
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
_SINGLE_NORMS = {"attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}
# Single-block linear1 holds q, k, v (hidden rows each) then the MLP input (the rest).
_SINGLE_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}


@dataclass(frozen=True)
class Geometry:
    """A Flux transformer's sizes, from its tensor shapes."""

    hidden: int
    mlp: int
    double: int
    single: int
    in_channels: int
    guidance: bool


def bfl_prefix(shapes: Shapes) -> str | None:
    """The prefix under which a file holds BFL-layout Flux blocks, None when it holds none."""
    for prefix in BFL_PREFIXES:
        if f"{prefix}double_blocks.0.img_attn.qkv.weight" in shapes:
            return prefix
    return None


def is_diffusers_flux(shapes: Shapes) -> bool:
    """A diffusers-layout Flux transformer: dual-stream and single-stream blocks."""
    return (
        "x_embedder.weight" in shapes
        and "single_transformer_blocks.0.attn.to_q.weight" in shapes
        and "transformer_blocks.0.attn.add_q_proj.weight" in shapes
    )


def is_flux(shapes: Shapes) -> bool:
    """A Flux transformer (alone or in a whole checkpoint) in either layout."""
    return bfl_prefix(shapes) is not None or is_diffusers_flux(shapes)


def _count(shapes: Shapes, pattern: re.Pattern[str], prefix: str) -> int:
    found = {
        int(m[1]) for k in shapes if k.startswith(prefix) and (m := pattern.match(k[len(prefix) :]))
    }
    return max(found) + 1 if found else 0


def geometry(shapes: Shapes) -> Geometry:
    """Sizes of a Flux transformer in either layout (the hidden width is ``img_in``'s
    output, the MLP width the first MLP layer's)."""
    prefix = bfl_prefix(shapes)
    if prefix is not None:
        hidden, in_channels = shapes[f"{prefix}img_in.weight"]
        mlp = shapes[f"{prefix}double_blocks.0.img_mlp.0.weight"][0]
        guidance = f"{prefix}guidance_in.in_layer.weight" in shapes
        return Geometry(
            hidden,
            mlp,
            _count(shapes, DOUBLE, prefix),
            _count(shapes, SINGLE, prefix),
            in_channels,
            guidance,
        )
    hidden, in_channels = shapes["x_embedder.weight"]
    return Geometry(
        hidden,
        shapes["transformer_blocks.0.ff.net.0.proj.weight"][0],
        _count(shapes, DIFFUSERS_DOUBLE, ""),
        _count(shapes, DIFFUSERS_SINGLE, ""),
        in_channels,
        "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
    )


def bfl_pieces(module: str, geo: Geometry, prefix: str = "") -> list[Piece] | None:
    """Where a diffusers module's weight lives in a BFL file (``module`` without
    ``.weight``); None for a name that is no Flux module."""
    h = geo.hidden
    if module in _TOP:
        return [Piece(f"{prefix}{_TOP[module]}.weight")]
    if module == "norm_out.linear":  # scale|shift in diffusers, shift|scale in BFL
        return swapped_halves(f"{prefix}final_layer.adaLN_modulation.1.weight", h)
    if m := DIFFUSERS_DOUBLE.match(module):
        block, inner = f"{prefix}double_blocks.{m[1]}.", module[m.end() :]
        if inner in _DOUBLE_NORMS:
            return [Piece(f"{block}{_DOUBLE_NORMS[inner]}.scale")]
        if inner not in _DOUBLE:
            return None
        name, third = _DOUBLE[inner]
        rows = None if third is None else thirds(third, h)
        return [Piece(f"{block}{name}.weight", rows)]
    if m := DIFFUSERS_SINGLE.match(module):
        block, inner = f"{prefix}single_blocks.{m[1]}.", module[m.end() :]
        if inner in _SINGLE_NORMS:
            return [Piece(f"{block}{_SINGLE_NORMS[inner]}.scale")]
        if inner in _SINGLE:
            return [Piece(f"{block}{_SINGLE[inner]}.weight")]
        if inner in _SINGLE_LINEAR1:
            i = _SINGLE_LINEAR1.index(inner)
            rows = thirds(i, h) if i < 3 else (3 * h, 3 * h + geo.mlp)
            return [Piece(f"{block}linear1.weight", rows)]
    return None


def diffusers_modules(geo: Geometry) -> list[str]:
    """Every weight-bearing diffusers module of a Flux transformer of this geometry."""
    names = [n for n in _TOP if geo.guidance or not n.startswith("time_text_embed.guidance")]
    names.append("norm_out.linear")
    for i in range(geo.double):
        names += [f"transformer_blocks.{i}.{n}" for n in (*_DOUBLE, *_DOUBLE_NORMS)]
    for i in range(geo.single):
        names += [
            f"single_transformer_blocks.{i}.{n}"
            for n in (*_SINGLE, *_SINGLE_NORMS, *_SINGLE_LINEAR1)
        ]
    return names


def keymap(geo: Geometry) -> KeyMap:
    """The diffusers <-> BFL map of a Flux transformer of this geometry."""
    return KeyMap(tuple(diffusers_modules(geo)), lambda module: bfl_pieces(module, geo))


def bfl_from_diffusers(state: dict, prefix: str = "") -> dict:
    """A diffusers-layout Flux state dict (tensors) in the BFL layout: fused tensors are
    concatenated along rows, ``norm_out`` halves swapped; biases follow their weights."""
    geo = geometry({k: tuple(v.shape) for k, v in state.items()})
    return original_from_diffusers(state, keymap(geo), prefix)


def diffusers_from_bfl(state: dict) -> dict:
    """The inverse of :func:`bfl_from_diffusers`, widths from the tensors' shapes."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return diffusers_from_original(state, keymap(geometry(shapes)), bfl_prefix(shapes) or "")


XLABS = re.compile(
    r"^(?:diffusion_model\.)?(double|single)_blocks\.(\d+)\.processor\.(qkv|proj)_lora([12]?)$"
)
# XLabs processors: lora1 the image stream, lora2 the text stream; single blocks have one.
_XLABS_DOUBLE = {
    ("qkv", "1"): "img_attn.qkv",
    ("qkv", "2"): "txt_attn.qkv",
    ("proj", "1"): "img_attn.proj",
    ("proj", "2"): "txt_attn.proj",
}


def lora_targets(shapes: Shapes) -> PiecesOf:
    """For a Flux transformer file (either layout): adapter module name (kohya
    ``lora_unet_<flat BFL name>``, PEFT ``transformer.<diffusers name>``, XLabs
    ``double_blocks.N.processor.qkv_lora1``) -> the pieces of this file's weights it
    changes, or None (see :func:`hub.core.dit_map.module_tables`)."""
    prefix = bfl_prefix(shapes)
    geo = geometry(shapes)
    tables = module_tables(keymap(geo), prefix)
    by_bfl = tables[1]
    hidden = geo.hidden

    def xlabs(module: str) -> list[Piece] | None:
        m = XLABS.match(module)
        if not m:
            return None
        if m[1] == "double":
            return by_bfl.get(f"double_blocks.{m[2]}.{_XLABS_DOUBLE.get((m[3], m[4] or '1'))}")
        if m[3] == "proj":
            return by_bfl.get(f"single_blocks.{m[2]}.linear2")
        pieces = by_bfl.get(f"single_blocks.{m[2]}.linear1") or []
        if prefix is not None:  # q, k and v: the first three hidden-wide row blocks
            return [Piece(p.key, (0, 3 * hidden)) for p in pieces] or None
        return [p for p in pieces if p.source_rows and p.source_rows[1] <= 3 * hidden] or None

    return adapter_targets(tables, xlabs)
