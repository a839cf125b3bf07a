"""Textual-inversion embeddings (FORMATS.md §5): the vectors each text encoder gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from adapters.lora import AdapterError

WIDTH_BASE = {768: "sd1", 1024: "sd2"}


@dataclass
class Embedding:
    """``vectors`` by encoder: ``text`` for single-encoder models, ``clip_l``/``clip_g`` for
    SDXL; each ``(n, width)``."""

    vectors: dict[str, torch.Tensor]

    @property
    def count(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def base(self) -> str:
        if set(self.vectors) == {"clip_l", "clip_g"}:
            return "sdxl"
        return WIDTH_BASE.get(self.vectors["text"].shape[1], "unknown")


def parse(state: Mapping[str, torch.Tensor]) -> Embedding:
    """A1111 ``emb_params`` or ``string_to_param.*``, the SDXL pair, or a diffusers
    single-token file."""
    if "clip_l" in state and "clip_g" in state:
        small, big = state["clip_l"], state["clip_g"]
        if small.shape[0] != big.shape[0]:
            raise AdapterError(f"clip_l has {small.shape[0]} vectors and clip_g {big.shape[0]}")
        return Embedding(
            {"clip_l": small.reshape(small.shape[0], -1), "clip_g": big.reshape(big.shape[0], -1)}
        )
    if len(state) != 1:
        raise AdapterError(f"an embedding holds one tensor (or the SDXL pair), not {len(state)}")
    (tensor,) = state.values()
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise AdapterError(f"embedding tensor of shape {list(tensor.shape)}")
    return Embedding({"text": tensor})
