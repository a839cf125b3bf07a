"""The converter protocol and the planner that chains converters.

A converter declares an edge ``source -> target`` between format nodes with a cost, and the
kinds it handles. Nodes: ``pickle``, ``safetensors`` (single file, LDM layout for
checkpoints), ``diffusers`` (a folder), ``kohya``/``peft`` (LoRA layouts),
``a1111-embedding``/``diffusers-embedding``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import HubError


@dataclass(frozen=True)
class ConvertJob:
    """One conversion step: read ``source``, write ``output`` (a file, or a folder for
    diffusers), for an artifact described by ``artifact`` (its registry JSON)."""

    source: Path
    output: Path
    artifact: dict[str, Any]
    dtype: str | None = None
    prune: bool = False
    hasher: Any = None  # a hub.core.hashing.Hasher: the output is hashed while it is written


@dataclass(frozen=True)
class Converter:
    name: str
    source: str
    target: str
    cost: int
    run: Callable[[ConvertJob], dict[str, Any]]  # returns parameters worth recording
    kinds: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"checkpoint", "lora", "embedding", "vae", "hypernetwork", "unknown"}
        )
    )


def node_of(artifact: dict[str, Any]) -> str:
    """The format node an artifact sits on."""
    if artifact["format"] in ("pickle", "diffusers"):
        return artifact["format"]
    if artifact["kind"] == "lora" and artifact["layout"] in ("kohya", "peft"):
        return artifact["layout"]
    if artifact["kind"] == "embedding" and artifact["layout"] in ("a1111", "diffusers"):
        return f"{artifact['layout']}-embedding"
    return "safetensors"


def plan(converters: dict[str, Converter], start: str, goal: str, kind: str) -> list[Converter]:
    """The cheapest chain of converters from ``start`` to ``goal`` for an artifact kind."""
    if start == goal:
        return []
    queue: list[tuple[int, int, str, list[Converter]]] = [(0, 0, start, [])]
    best: dict[str, int] = {start: 0}
    tie = 0
    while queue:
        cost, _, node, path = heapq.heappop(queue)
        if node == goal:
            return path
        for conv in converters.values():
            if conv.source != node or kind not in conv.kinds:
                continue
            new = cost + conv.cost
            if new < best.get(conv.target, 1 << 30):
                best[conv.target] = new
                tie += 1
                heapq.heappush(queue, (new, tie, conv.target, [*path, conv]))
    raise HubError(
        f"no conversion from {start} to {goal} for a {kind}",
        hint="see `hub plugins` for the converters that are loaded",
    )
