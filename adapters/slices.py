"""Row slices of an adapter module's change: a LoRA trained on a fused projection (Flux's
``qkv``, ``linear1``) applied to split weights, or one whose output halves a model stores
swapped. Rows of ``up @ down`` are rows of ``up``, so a plain LoRA stays low-rank."""

from __future__ import annotations

import torch

from adapters import keys as lk
from adapters.lora import DELTAS, AdapterError, Module, _plain_lora, delta


def _sliced(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return t[lo:hi].contiguous()


def row_slice(mod: Module, rows: tuple[int, int], shape: tuple[int, ...], name: str) -> Module:
    """The module whose change is rows ``lo:hi`` of ``mod``'s change to a weight of
    ``shape`` (a ``diff_b`` is sliced alike). Plain LoRAs slice ``up``; other modules whose
    change needs no weight become full diffs; the rest raise :class:`AdapterError`."""
    lo, hi = rows
    tensors: dict[str, torch.Tensor] = {}
    if _plain_lora(mod, len(shape)):
        tensors = dict(mod.tensors)
        tensors["lora_up.weight"] = _sliced(mod.tensors["lora_up.weight"], lo, hi)
        algo = mod.algo
    elif mod.algo in DELTAS:
        tensors = {"diff": _sliced(delta(mod, torch.zeros(shape)), lo, hi)}
        algo = lk.FULL
    else:
        raise AdapterError(f"{mod.name}: a {mod.algo} module cannot be split into row slices")
    if mod.has("diff_b"):
        tensors["diff_b"] = _sliced(mod.tensors["diff_b"], lo, hi)
    return Module(name, algo, tensors, mod.scale)
