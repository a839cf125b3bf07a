"""SD3/SD3.5 MMDiT key layouts: the original one (SAI's reference code and ComfyUI:
``joint_blocks.N.x_block.attn.qkv``, fused q/k/v, ``model.diffusion_model.`` in whole
checkpoints) and diffusers' (``transformer_blocks.N.attn.to_q``, split), and where a LoRA
of either naming (PEFT ``transformer.…``, kohya ``lora_unet_joint_blocks_…``) lands.

Facts (sources: diffusers 0.42 ``convert_sd3_transformer_checkpoint_to_diffusers``, read not
copied; kohya-ss sd-scripts ``networks/lora_sd3.py`` for kohya names, ``lora_unet_`` plus
the MMDiT module path with ``_`` for ``.``, text encoders ``lora_te1/2/3``):
``x_block`` is the image stream (diffusers ``attn.to_q``, ``ff``, ``norm1``),
``context_block`` the text stream (``attn.add_q_proj``, ``ff_context``, ``norm1_context``);
``qkv`` rows are q, k, v, one hidden width each; RMSNorm ``ln_q``/``ln_k`` (SD3.5) are
``norm_q``/``norm_k``; SD3.5 Medium's MMDiT-X blocks add ``x_block.attn2`` (``attn2.*``)
and a 9-way ``adaLN_modulation``. The last block's context stream is "pre-only": no
``attn.proj`` and no MLP, and its 2-way AdaLN (shift, scale) is diffusers'
``AdaLayerNormContinuous`` (scale, shift): halves swapped, as in ``final_layer``.
diffusers' converter derives its widths from the tensors (``chunk``), so it converts tiny
models too; tests/test_sd3.py checks this map against it at full and tiny size.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.core import dit_keys
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

# Top-level modules: diffusers name -> original name.
_TOP = {
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
_RENAMED = {"pos_embed.pos_embed": "pos_embed"}  # the learned position table, no module
# Joint-block modules: diffusers name -> (original name, third of a fused qkv or None).
_BLOCK = {
    "norm1.linear": ("x_block.adaLN_modulation.1", None),
    "attn.to_q": ("x_block.attn.qkv", 0),
    "attn.to_k": ("x_block.attn.qkv", 1),
    "attn.to_v": ("x_block.attn.qkv", 2),
    "attn.to_out.0": ("x_block.attn.proj", None),
    "attn.norm_q": ("x_block.attn.ln_q", None),
    "attn.norm_k": ("x_block.attn.ln_k", None),
    "ff.net.0.proj": ("x_block.mlp.fc1", None),
    "ff.net.2": ("x_block.mlp.fc2", None),
    "attn.add_q_proj": ("context_block.attn.qkv", 0),
    "attn.add_k_proj": ("context_block.attn.qkv", 1),
    "attn.add_v_proj": ("context_block.attn.qkv", 2),
    "attn.to_add_out": ("context_block.attn.proj", None),
    "attn.norm_added_q": ("context_block.attn.ln_q", None),
    "attn.norm_added_k": ("context_block.attn.ln_k", None),
    "ff_context.net.0.proj": ("context_block.mlp.fc1", None),
    "ff_context.net.2": ("context_block.mlp.fc2", None),
    "attn2.to_q": ("x_block.attn2.qkv", 0),
    "attn2.to_k": ("x_block.attn2.qkv", 1),
    "attn2.to_v": ("x_block.attn2.qkv", 2),
    "attn2.to_out.0": ("x_block.attn2.proj", None),
    "attn2.norm_q": ("x_block.attn2.ln_q", None),
    "attn2.norm_k": ("x_block.attn2.ln_k", None),
}
_CONTEXT_NORM = "norm1_context.linear"  # context_block.adaLN_modulation.1


@dataclass(frozen=True)
class Geometry:
    """An SD3-family MMDiT's sizes, from its tensor shapes: hidden width and depth (the
    last block's context stream is pre-only)."""

    hidden: int
    depth: int


def geometry(shapes: Shapes) -> Geometry:
    """The geometry of an SD3 transformer in either layout (whole checkpoints included)."""
    depth, hidden, _ = dit_keys.sd3_geometry(shapes)
    return Geometry(hidden, depth)


def is_sd3(shapes: Shapes) -> bool:
    """An SD3-family transformer (alone or in a whole checkpoint) in either layout."""
    return dit_keys.sd3_prefix(shapes) is not None or dit_keys.is_diffusers_sd3(shapes)


def original_pieces(module: str, geo: Geometry) -> list[Piece] | None:
    """Where a diffusers module's weight lives in an original-layout file (unprefixed);
    None for a name that is no SD3 module."""
    if module in _TOP:
        return [Piece(f"{_TOP[module]}.weight")]
    if module == "norm_out.linear":
        return swapped_halves("final_layer.adaLN_modulation.1.weight", geo.hidden)
    m = dit_keys.DIFFUSERS_BLOCK.match(module)
    if not m:
        return None
    block, inner = f"joint_blocks.{m[1]}.", module[m.end() :]
    if inner == _CONTEXT_NORM:
        key = f"{block}context_block.adaLN_modulation.1.weight"
        last = int(m[1]) == geo.depth - 1
        return swapped_halves(key, geo.hidden) if last else [Piece(key)]
    if inner not in _BLOCK:
        return None
    name, third = _BLOCK[inner]
    return [Piece(f"{block}{name}.weight", None if third is None else thirds(third, geo.hidden))]


def keymap(geo: Geometry) -> KeyMap:
    """The diffusers <-> original map of an SD3 transformer of this geometry (modules a
    given file lacks, such as ``attn2`` outside MMDiT-X blocks, are skipped)."""
    blocks = [
        f"transformer_blocks.{i}.{n}" for i in range(geo.depth) for n in (*_BLOCK, _CONTEXT_NORM)
    ]
    modules = (*_TOP, "norm_out.linear", *blocks)
    return KeyMap(modules, lambda module: original_pieces(module, geo), _RENAMED)


def sai_from_diffusers(state: dict, prefix: str = "") -> dict:
    """A diffusers-layout SD3 state dict (tensors) in the original layout under ``prefix``
    (``model.diffusion_model.`` for a whole checkpoint)."""
    geo = geometry({k: tuple(v.shape) for k, v in state.items()})
    return original_from_diffusers(state, keymap(geo), prefix)


def diffusers_from_sai(state: dict) -> dict:
    """The inverse of :func:`sai_from_diffusers`, widths from the tensors' shapes;
    tensors of other parts (text encoders, VAE) are left out."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    prefix = dit_keys.sd3_prefix(shapes) or ""
    return diffusers_from_original(state, keymap(geometry(shapes)), prefix)


def lora_targets(shapes: Shapes) -> PiecesOf:
    """For an SD3 transformer file (either layout): adapter module name (kohya
    ``lora_unet_<flat original name>``, PEFT ``transformer.<diffusers name>``) -> the pieces
    of this file's weights it changes, or None."""
    return adapter_targets(module_tables(keymap(geometry(shapes)), dit_keys.sd3_prefix(shapes)))
