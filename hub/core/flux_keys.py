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

Shapes = dict[str, tuple[int, ...]]
Rows = tuple[int, int]

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
class Piece:
    """Where (part of) a diffusers tensor lives in a BFL file: the key, the BFL rows, and
    the diffusers rows they hold (None: the whole tensor)."""

    key: str
    rows: Rows | None = None
    source_rows: Rows | None = None


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


def _thirds(index: int, hidden: int) -> Rows:
    return index * hidden, (index + 1) * hidden


def bfl_pieces(module: str, geo: Geometry, prefix: str = "") -> list[Piece] | None:
    """Where a diffusers module's weight lives in a BFL file (``module`` without
    ``.weight``); None for a name that is no Flux module."""
    h = geo.hidden
    if module in _TOP:
        return [Piece(f"{prefix}{_TOP[module]}.weight")]
    if module == "norm_out.linear":  # scale|shift in diffusers, shift|scale in BFL
        key = f"{prefix}final_layer.adaLN_modulation.1.weight"
        return [Piece(key, (h, 2 * h), (0, h)), Piece(key, (0, h), (h, 2 * h))]
    if m := DIFFUSERS_DOUBLE.match(module):
        block, inner = f"{prefix}double_blocks.{m[1]}.", module[m.end() :]
        if inner in _DOUBLE_NORMS:
            return [Piece(f"{block}{_DOUBLE_NORMS[inner]}.scale")]
        if inner not in _DOUBLE:
            return None
        name, third = _DOUBLE[inner]
        rows = None if third is None else _thirds(third, h)
        return [Piece(f"{block}{name}.weight", rows)]
    if m := DIFFUSERS_SINGLE.match(module):
        block, inner = f"{prefix}single_blocks.{m[1]}.", module[m.end() :]
        if inner in _SINGLE_NORMS:
            return [Piece(f"{block}{_SINGLE_NORMS[inner]}.scale")]
        if inner in _SINGLE:
            return [Piece(f"{block}{_SINGLE[inner]}.weight")]
        if inner in _SINGLE_LINEAR1:
            i = _SINGLE_LINEAR1.index(inner)
            rows = _thirds(i, h) if i < 3 else (3 * h, 3 * h + geo.mlp)
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


def bfl_from_diffusers(state: dict, prefix: str = "") -> dict:
    """A diffusers-layout Flux state dict (tensors) in the BFL layout: fused tensors are
    concatenated along rows, ``norm_out`` halves swapped; biases follow their weights."""
    import torch

    geo = geometry({k: tuple(v.shape) for k, v in state.items()})
    out: dict = {}
    for module in diffusers_modules(geo):
        for param in ("weight", "bias"):
            source = state.get(f"{module}.{param}")
            if source is None:
                continue
            for piece in bfl_pieces(module, geo, prefix) or []:
                key = piece.key.removesuffix(".weight").removesuffix(".scale")
                key += f".{param}" if not piece.key.endswith(".scale") else ".scale"
                part = source if piece.source_rows is None else source[slice(*piece.source_rows)]
                out.setdefault(key, []).append((piece.rows or (0, len(part)), part))
    return {k: torch.cat([p for _, p in sorted(v, key=lambda r: r[0])]) for k, v in out.items()}


def diffusers_from_bfl(state: dict) -> dict:
    """The inverse of :func:`bfl_from_diffusers`, widths from the tensors' shapes."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    prefix = bfl_prefix(shapes) or ""
    geo = geometry(shapes)
    out: dict = {}
    for module in diffusers_modules(geo):
        for piece in bfl_pieces(module, geo, prefix) or []:
            norm = piece.key.endswith(".scale")
            base = piece.key.removesuffix(".weight").removesuffix(".scale")
            for param in ("weight",) if norm else ("weight", "bias"):
                source = state.get(f"{base}.{'scale' if norm else param}")
                if source is None:
                    continue
                part = source if piece.rows is None else source[slice(*piece.rows)]
                out.setdefault(f"{module}.{param}", []).append((piece.source_rows or (0, 0), part))
    import torch

    return {k: torch.cat([p for _, p in sorted(v, key=lambda r: r[0])]) for k, v in out.items()}


def _pieces_by_param(geo: Geometry, prefix: str, shapes: Shapes):
    """(diffusers parameter, its pieces in a BFL file: key and rows) for every parameter the
    BFL file holds."""
    for module in diffusers_modules(geo):
        for piece in bfl_pieces(module, geo, prefix) or []:
            norm = piece.key.endswith(".scale")
            base = piece.key.removesuffix(".weight").removesuffix(".scale")
            for param in ("weight",) if norm else ("weight", "bias"):
                key = f"{base}.{'scale' if norm else param}"
                if key in shapes:
                    yield f"{module}.{param}", Piece(key, piece.rows, piece.source_rows)


def assemble(state: dict, pieces: list[Piece]) -> object:
    """One diffusers tensor from its BFL pieces (in diffusers row order): a row view when it
    is one piece, else a new tensor."""
    import torch

    parts = [
        (p.source_rows or (0, 0), state[p.key] if p.rows is None else state[p.key][slice(*p.rows)])
        for p in pieces
    ]
    if len(parts) == 1:
        return parts[0][1]
    return torch.cat([t for _, t in sorted(parts, key=lambda r: r[0])])


def diffusers_views(state: dict, prefix: str) -> tuple[dict, dict[str, list[Piece]]]:
    """A BFL-layout state dict as diffusers tensors that are row VIEWS of it (changing a
    fused tensor in place changes them), and the diffusers tensors that cannot be views
    (``norm_out.linear``, its halves swapped) with their pieces."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    geo = geometry(shapes)
    by_param: dict[str, list[Piece]] = {}
    for name, piece in _pieces_by_param(geo, prefix, shapes):
        by_param.setdefault(name, []).append(piece)
    out = {name: assemble(state, pieces) for name, pieces in by_param.items()}
    return out, {name: pieces for name, pieces in by_param.items() if len(pieces) > 1}


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


def _module_of(key: str) -> str:
    return key.removesuffix(".weight").removesuffix(".scale")


def lora_targets(shapes: Shapes):
    """For a Flux transformer file (either layout): adapter module name (kohya
    ``lora_unet_<flat BFL name>``, PEFT ``transformer.<diffusers name>``, XLabs
    ``double_blocks.N.processor.qkv_lora1``) -> the pieces of this file's weights it
    changes, or None. A piece with ``source_rows`` takes those rows of the module's output
    (a fused module on split weights, or diffusers' swapped ``norm_out`` on BFL weights)."""
    prefix = bfl_prefix(shapes)
    geo = geometry(shapes)
    by_diffusers: dict[str, list[Piece]] = {}
    by_bfl: dict[str, list[Piece]] = {}
    for module in diffusers_modules(geo):
        for piece in bfl_pieces(module, geo) or []:
            bfl = _module_of(piece.key)
            if prefix is None:
                key = f"{module}.weight"
                by_diffusers[module] = [Piece(key)]
                by_bfl.setdefault(bfl, []).append(Piece(key, piece.source_rows, piece.rows))
            else:
                by_diffusers.setdefault(module, []).append(
                    Piece(prefix + piece.key, piece.rows, piece.source_rows)
                )
                by_bfl[bfl] = [Piece(prefix + piece.key)]
    flat_bfl = {name.replace(".", "_"): name for name in by_bfl}
    hidden = geo.hidden

    def xlabs(m: re.Match[str]) -> list[Piece] | None:
        if m[1] == "double":
            return by_bfl.get(f"double_blocks.{m[2]}.{_XLABS_DOUBLE.get((m[3], m[4] or '1'))}")
        if m[3] == "proj":
            return by_bfl.get(f"single_blocks.{m[2]}.linear2")
        pieces = by_bfl.get(f"single_blocks.{m[2]}.linear1") or []
        if prefix is not None:  # q, k and v: the first three hidden-wide row blocks
            return [Piece(p.key, (0, 3 * hidden)) for p in pieces] or None
        return [p for p in pieces if p.source_rows and p.source_rows[1] <= 3 * hidden] or None

    def target(module: str) -> list[Piece] | None:
        if module.startswith("transformer."):
            return by_diffusers.get(module.removeprefix("transformer."))
        if module.startswith("lora_unet_"):
            name = flat_bfl.get(module.removeprefix("lora_unet_"))
            return by_bfl.get(name) if name else None
        m = XLABS.match(module)
        return xlabs(m) if m else None

    return target


SLICE = "#"  # ``<module>#<i>``: the i-th row slice of a module recut to a file's layout


def recut(modules: dict, pieces_of, shapes: Shapes) -> dict:
    """``modules`` (adapter modules by name) with each module that lands in several pieces,
    or in part of its own output, replaced by one row-slice module per piece
    (``<name>#<i>``); a module that cannot be sliced stays whole and so finds no target."""
    from adapters.lora import AdapterError
    from adapters.slices import row_slice

    out = {}
    for name, mod in modules.items():
        pieces = pieces_of(name) or []
        if not pieces or (len(pieces) == 1 and pieces[0].source_rows is None):
            out[name] = mod
            continue
        shape = (max(p.source_rows[1] for p in pieces), *shapes[pieces[0].key][1:])
        try:
            out |= {
                f"{name}{SLICE}{i}": row_slice(mod, p.source_rows, shape, f"{name}{SLICE}{i}")
                for i, p in enumerate(pieces)
            }
        except AdapterError:
            out[name] = mod
    return out


def piece_target(pieces_of, module: str) -> tuple[str, Rows | None] | None:
    """The one (weight key, rows) a module or row slice of :func:`recut` changes."""
    name, _, index = module.partition(SLICE)
    pieces = pieces_of(name) or []
    if index:
        piece = pieces[int(index)] if int(index) < len(pieces) else None
    else:
        piece = pieces[0] if len(pieces) == 1 and pieces[0].source_rows is None else None
    return (piece.key, piece.rows) if piece else None
