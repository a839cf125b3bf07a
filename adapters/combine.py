"""LoRA + LoRA (FORMATS.md §7): exact concatenation of plain LoRA/LoCon modules, or an SVD
of the summed weight changes to a target rank. Kohya naming in, kohya naming out."""

from __future__ import annotations

import torch

from adapters import keys as lk
from adapters.lora import Adapter, AdapterError, Module, alpha_scale, delta


def _modules(adapters: list[tuple[Adapter, float]]) -> dict[str, list[tuple[Module, float]]]:
    by_name: dict[str, list[tuple[Module, float]]] = {}
    for adapter, weight in adapters:
        for name, mod in adapter.modules.items():
            if not name.startswith(lk.KOHYA_PREFIXES):
                raise AdapterError(
                    f"{name}: LoRA merging takes kohya-named files",
                )
            if mod.has("diff_b"):
                raise AdapterError(f"{name}: a LoRA cannot hold its bias change (diff_b)")
            by_name.setdefault(name, []).append((mod, weight))
    return by_name


def concat(adapters: list[tuple[Adapter, float]]) -> dict[str, torch.Tensor]:
    """One LoRA whose every module equals the weighted sum of the inputs' modules exactly:
    ups (scaled) side by side, downs stacked, alpha = total rank."""
    out: dict[str, torch.Tensor] = {}
    for name, parts in _modules(adapters).items():
        ups, downs = [], []
        for mod, weight in parts:
            if mod.algo not in (lk.LORA, lk.LOCON):
                raise AdapterError(
                    f"{name}: {mod.algo} modules cannot be concatenated",
                )
            up, down = mod.t("lora_up.weight"), mod.t("lora_down.weight")
            if downs and down.shape[1:] != downs[0].shape[1:]:
                raise AdapterError(f"{name}: the inputs' kernels differ")
            ups.append(up * (weight * alpha_scale(mod, down.shape[0])))
            downs.append(down)
        rank = sum(d.shape[0] for d in downs)
        out[f"{name}.lora_up.weight"] = torch.cat(ups, dim=1).contiguous()
        out[f"{name}.lora_down.weight"] = torch.cat(downs, dim=0).contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def _shape(mod: Module) -> tuple[int, ...]:
    t = mod.tensors
    if "lora_down.weight" in t:
        up, down = t["lora_up.weight"], t["lora_down.weight"]
        kernel = (
            tuple(t["lora_mid.weight"].shape[2:])
            if "lora_mid.weight" in t
            else tuple(down.shape[2:])
        )
        return (up.shape[0], down.shape[1], *kernel)
    if "diff" in t:
        return tuple(t["diff"].shape)
    if "hada_w1_a" in t and "hada_t1" not in t:
        return (t["hada_w1_a"].shape[0], t["hada_w1_b"].shape[1])
    raise AdapterError(
        f"{mod.name}: the weight shape of a {mod.algo} module is not known without the model"
    )


def svd(adapters: list[tuple[Adapter, float]], rank: int) -> dict[str, torch.Tensor]:
    """One LoRA of at most ``rank`` per module: the SVD of the summed weight changes."""
    out: dict[str, torch.Tensor] = {}
    for name, parts in _modules(adapters).items():
        shape = _shape(parts[0][0])
        total = torch.zeros(shape)
        for mod, weight in parts:
            total += weight * delta(mod, torch.zeros(shape))
        flat = total.reshape(shape[0], -1).double()
        u, s, vh = torch.linalg.svd(flat, full_matrices=False)
        r = min(rank, s.shape[0])
        up = (u[:, :r] * s[:r]).float()
        down = vh[:r].float()
        if len(shape) == 4:
            up = up.reshape(shape[0], r, 1, 1)
            down = down.reshape(r, *shape[1:])
        out[f"{name}.lora_up.weight"] = up.contiguous()
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(r))
    return out
