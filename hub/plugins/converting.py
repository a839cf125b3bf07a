"""The converter protocol and the planner that chains converters.

A converter declares an edge ``source -> target`` between format nodes with a cost, the kinds
it handles, and what it writes: the registry format of its output, the output's file suffix
(none: a folder) and other names users may give the target (``hub convert --to NAME``). The
nodes are whatever converters declare; the built-in ones are ``pickle``, ``safetensors``
(single file, LDM layout for checkpoints), ``diffusers`` (a folder), ``kohya``/``peft`` (LoRA
layouts), ``a1111-embedding``/``diffusers-embedding``. A converter whose source and target
are the same node rewrites in place (dtype, pruning).
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
    """One edge of the conversion graph.

    ``run(job)`` reads ``job.source`` and writes ``job.output`` (a file ending in ``suffix``,
    or a folder when ``suffix`` is empty); it may feed the bytes it writes to ``job.hasher``
    (else the output is hashed after). ``writes`` is the registry format of the output
    (``safetensors``, ``diffusers``, or a format of the plugin's own, such as ``gguf``);
    ``aliases`` are other names of ``target`` for ``hub convert --to``.
    """

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
    writes: str = "safetensors"
    suffix: str = ".safetensors"
    aliases: tuple[str, ...] = ()


def node_of(artifact: dict[str, Any]) -> str:
    """The format node an artifact sits on: its format, or for a safetensors file its
    LoRA or embedding layout."""
    if artifact["format"] != "safetensors":
        return artifact["format"]
    if artifact["kind"] == "lora" and artifact["layout"] in ("kohya", "peft"):
        return artifact["layout"]
    if artifact["kind"] == "embedding" and artifact["layout"] in ("a1111", "diffusers"):
        return f"{artifact['layout']}-embedding"
    return "safetensors"


def targets(converters: dict[str, Converter]) -> dict[str, str]:
    """Every name ``hub convert --to`` accepts (lower case), mapped to its node: each
    declared target and its aliases (the first converter to name an alias wins)."""
    names: dict[str, str] = {}
    for conv in converters.values():
        for name in (conv.target, *conv.aliases):
            names.setdefault(name.lower(), conv.target)
    return names


def rewriter(converters: dict[str, Converter], artifact: dict[str, Any]) -> Converter | None:
    """The converter that rewrites an artifact in its own format (dtype, pruning), if any:
    source and target both its node or both its registry format."""
    nodes = {node_of(artifact), artifact["format"]}
    return next(
        (
            c
            for c in converters.values()
            if c.source == c.target and c.source in nodes and artifact["kind"] in c.kinds
        ),
        None,
    )


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
            if conv.source != node or conv.target == node or kind not in conv.kinds:
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
