"""The machinery shared by the key maps of diffusion transformers (Flux in
:mod:`hub.core.flux_keys`, SD3/SD3.5 in :mod:`hub.core.sd3_keys`): each model's original
layout (BFL's, SAI's, as ComfyUI keeps them) fuses some of diffusers' modules into one
tensor (q, k and v into ``qkv``) and stores some output halves swapped (AdaLN's shift and
scale). A model's map says, for each diffusers module, which original key and rows hold its
weight (:class:`Piece`); from that alone this module converts whole state dicts both ways,
finds where a LoRA module of either naming lands in a file of either layout, and recuts
adapter modules into row slices where the layouts split differently."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Shapes = dict[str, tuple[int, ...]]
Rows = tuple[int, int]


@dataclass(frozen=True)
class Piece:
    """Where (part of) a diffusers tensor lives in an original-layout file: the key, the
    original rows, and the diffusers rows they hold (None: the whole tensor)."""

    key: str
    rows: Rows | None = None
    source_rows: Rows | None = None


@dataclass(frozen=True)
class KeyMap:
    """One transformer geometry's map: its weight-bearing diffusers modules, where each
    module's weight lives in the original layout (``pieces(module)``, unprefixed keys ending
    in ``.weight``, or ``.scale`` for RMSNorm scales that carry no bias), and the tensors
    that are no module's weight or bias (diffusers key -> original key)."""

    modules: tuple[str, ...]
    pieces: Callable[[str], list[Piece] | None]
    renamed: Mapping[str, str] = field(default_factory=dict)


def thirds(index: int, width: int) -> Rows:
    """The rows of q (0), k (1) or v (2) in a fused projection of ``width`` rows each."""
    return index * width, (index + 1) * width


def swapped_halves(key: str, width: int) -> list[Piece]:
    """A weight whose two ``width``-row halves the layouts store in opposite orders."""
    return [Piece(key, (width, 2 * width), (0, width)), Piece(key, (0, width), (width, 2 * width))]


def _params(key: str) -> tuple[str, tuple[str, ...]]:
    """``x.weight`` -> (``x``, weight and bias); ``x.scale`` -> (``x``, scale only)."""
    if key.endswith(".scale"):
        return key.removesuffix(".scale"), ("scale",)
    return key.removesuffix(".weight"), ("weight", "bias")


def _concat(parts: dict[str, list]) -> dict:
    import torch

    return {k: torch.cat([p for _, p in sorted(v, key=lambda r: r[0])]) for k, v in parts.items()}


def original_from_diffusers(state: Mapping, keymap: KeyMap, prefix: str = "") -> dict:
    """A diffusers-layout state dict (tensors) in the original layout under ``prefix``:
    fused tensors concatenated along rows, swapped halves swapped; biases follow weights."""
    out: dict[str, list] = {}
    for module in keymap.modules:
        for piece in keymap.pieces(module) or []:
            base, params = _params(piece.key)
            for param, source_param in zip(params, ("weight", "bias"), strict=False):
                source = state.get(f"{module}.{source_param}")
                if source is None:
                    continue
                part = source if piece.source_rows is None else source[slice(*piece.source_rows)]
                at = piece.rows or (0, len(part))
                out.setdefault(f"{prefix}{base}.{param}", []).append((at, part))
    renamed = {f"{prefix}{k}": state[d] for d, k in keymap.renamed.items() if d in state}
    return _concat(out) | renamed


def diffusers_from_original(state: Mapping, keymap: KeyMap, prefix: str = "") -> dict:
    """The inverse of :func:`original_from_diffusers`."""
    out: dict[str, list] = {}
    for module in keymap.modules:
        for piece in keymap.pieces(module) or []:
            base, params = _params(piece.key)
            for param, target_param in zip(params, ("weight", "bias"), strict=False):
                source = state.get(f"{prefix}{base}.{param}")
                if source is None:
                    continue
                part = source if piece.rows is None else source[slice(*piece.rows)]
                at = piece.source_rows or (0, 0)
                out.setdefault(f"{module}.{target_param}", []).append((at, part))
    renamed = {d: state[f"{prefix}{k}"] for d, k in keymap.renamed.items() if prefix + k in state}
    return _concat(out) | renamed


def module_of(key: str) -> str:
    """A weight key's module: ``x.weight`` and ``x.scale`` -> ``x``."""
    return key.removesuffix(".weight").removesuffix(".scale")


Tables = tuple[dict[str, list[Piece]], dict[str, list[Piece]]]


def module_tables(keymap: KeyMap, prefix: str | None) -> Tables:
    """For a file in the original layout under ``prefix`` (None: the diffusers layout):
    diffusers module -> the pieces of the file's weights it changes, and original module ->
    the same. A piece with ``source_rows`` takes those rows of the module's output (a fused
    module on split weights, or a module whose halves the file stores swapped)."""
    by_diffusers: dict[str, list[Piece]] = {}
    by_original: dict[str, list[Piece]] = {}
    for module in keymap.modules:
        for piece in keymap.pieces(module) or []:
            original = module_of(piece.key)
            if prefix is None:
                key = f"{module}.weight"
                by_diffusers[module] = [Piece(key)]
                by_original.setdefault(original, []).append(
                    Piece(key, piece.source_rows, piece.rows)
                )
            else:
                by_diffusers.setdefault(module, []).append(
                    Piece(prefix + piece.key, piece.rows, piece.source_rows)
                )
                by_original[original] = [Piece(prefix + piece.key)]
    return by_diffusers, by_original


PiecesOf = Callable[[str], list[Piece] | None]


def adapter_targets(tables: Tables, other: PiecesOf | None = None) -> PiecesOf:
    """Adapter module name -> the pieces it changes, for PEFT names
    (``transformer.<diffusers module>``) and kohya names (``lora_unet_<original module with
    _ for .>``), then ``other`` for a model's own layouts; None for no target."""
    by_diffusers, by_original = tables
    flat = {name.replace(".", "_"): name for name in by_original}

    def target(module: str) -> list[Piece] | None:
        if module.startswith("transformer."):
            return by_diffusers.get(module.removeprefix("transformer."))
        if module.startswith("lora_unet_"):
            name = flat.get(module.removeprefix("lora_unet_"))
            return by_original.get(name) if name else None
        return other(module) if other else None

    return target


SLICE = "#"  # ``<module>#<i>``: the i-th row slice of a module recut to a file's layout


def recut(modules: dict, pieces_of: PiecesOf, shapes: Shapes) -> dict:
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


def piece_target(pieces_of: PiecesOf, module: str) -> tuple[str, Rows | None] | None:
    """The one (weight key, rows) a module or row slice of :func:`recut` changes."""
    name, _, index = module.partition(SLICE)
    pieces = pieces_of(name) or []
    if index:
        piece = pieces[int(index)] if int(index) < len(pieces) else None
    else:
        piece = pieces[0] if len(pieces) == 1 and pieces[0].source_rows is None else None
    return (piece.key, piece.rows) if piece else None
