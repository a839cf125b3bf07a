"""Reading fp8 weights fast: torch converts float8 to float32 one element at a time, while
a 256-entry table lookup (numpy gathers from uint8 indices directly) is exact and several
times faster on a CPU."""

from __future__ import annotations

from functools import cache

import torch

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


@cache
def _table(dtype: torch.dtype):
    return torch.arange(256, dtype=torch.uint8).view(dtype).float().numpy()


def upcast(t: torch.Tensor) -> torch.Tensor:
    """A contiguous float32 copy of ``t`` (bit-exact, NaNs included, for fp8 as for the rest)."""
    if t.dtype in FP8 and t.device.type == "cpu":
        raw = t.contiguous().view(torch.uint8).numpy().reshape(-1)
        return torch.from_numpy(_table(t.dtype)[raw]).reshape(t.shape)
    return t.to(torch.float32, copy=True, memory_format=torch.contiguous_format)
