"""Built-in checkpoint merge methods (FORMATS.md §7), per tensor, in float32.

Each method takes the tensors of the inputs in order (primary first), the multiplier and
its declared options, and returns the merged tensor.
"""

from __future__ import annotations

import zlib
from typing import Any

from hub import hookimpl
from hub.plugins.merging import MergeMethod, MergeOption

DENSITY = MergeOption("density", float, 0.2, "fraction of each task vector kept")
SEED = MergeOption("seed", int, 0, "random seed of the drop mask")


def weighted_sum(t: list[Any], alpha: float, options: dict[str, Any], key: str) -> Any:
    return (1 - alpha) * t[0] + alpha * t[1]


def add_difference(t: list[Any], alpha: float, options: dict[str, Any], key: str) -> Any:
    return t[0] + alpha * (t[1] - t[2])


def _trim(tau: Any, density: float) -> Any:
    """Keep the top ``density`` fraction of a task vector by magnitude."""
    import torch

    k = int(tau.numel() * density)
    if k <= 0:
        return torch.zeros_like(tau)
    threshold = tau.abs().flatten().kthvalue(tau.numel() - k + 1).values
    return torch.where(tau.abs() >= threshold, tau, torch.zeros_like(tau))


def _elect(taus: list[Any], weights: list[float]) -> Any:
    """TIES: sign of the sum, then the mean of the agreeing entries (disjoint mean)."""
    import torch

    stacked = torch.stack(taus)
    sign = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
    agree = (torch.sign(stacked) == sign) & (stacked != 0)
    lam = torch.tensor(weights).reshape(-1, *([1] * taus[0].dim()))
    total = (stacked * lam * agree).sum(0)
    return total / agree.sum(0).clamp(min=1)


def ties(t: list[Any], alpha: float, options: dict[str, Any], key: str) -> Any:
    density = float(options["density"])
    taus = [_trim(x - t[0], density) for x in t[1:]]
    return t[0] + _elect(taus, [alpha] * len(taus))


def dare(t: list[Any], alpha: float, options: dict[str, Any], key: str) -> Any:
    """DARE-linear: drop each task-vector entry with p = 1 - density (seeded per tensor),
    rescale the survivors by 1/(1-p), and add the weighted sum."""
    import torch

    density = float(options["density"])
    seed = int(options["seed"]) ^ zlib.crc32(key.encode())
    gen = torch.Generator().manual_seed(seed)
    out = t[0].clone()
    for x in t[1:]:
        keep = torch.rand(x.shape, generator=gen) < density
        out += alpha * torch.where(keep, (x - t[0]) / density, torch.zeros_like(x))
    return out


BUILTIN = [
    MergeMethod("weighted-sum", (2, 2), "Weighted sum", weighted_sum, elementwise=True),
    MergeMethod("add-difference", (3, 3), "Add difference", add_difference, elementwise=True),
    MergeMethod("ties", (2, 8), "TIES", ties, options=(DENSITY,)),
    MergeMethod("dare", (2, 8), "DARE", dare, options=(DENSITY, SEED)),
]


@hookimpl(trylast=True)
def register_merge_methods(register):
    for method in BUILTIN:
        register(method.name, method)
