"""``hub convert``: plan a chain of converter plugins, run it in the staging folder, and
register the result with lineage to its source. Nothing appears in the store or the registry
until the last step has finished."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.hashing import FileHashes, Hasher, hash_file, hash_folder
from hub.core.sidecars import Sidecars
from hub.plugins.converting import ConvertJob, node_of, plan
from hub.register import (
    Lineage,
    Overrides,
    autov3_in_pass,
    commit,
    identify_path,
)

TARGETS = {
    "safetensors": "safetensors",
    "ldm": "safetensors",
    "single-file": "safetensors",
    "diffusers": "diffusers",
    "kohya": "kohya",
    "peft": "peft",
    "a1111": "a1111-embedding",
    "a1111-embedding": "a1111-embedding",
    "diffusers-embedding": "diffusers-embedding",
}


@dataclass(frozen=True)
class ConvertResult:
    status: str
    artifact: dict[str, Any]
    steps: list[str]


def _default_goal(art: dict[str, Any]) -> str:
    if art["format"] == "pickle":
        return "a1111-embedding" if art["kind"] == "embedding" else "safetensors"
    return node_of(art)


def convert_file(
    ctx: Context,
    source: Path,
    art: dict[str, Any],
    goal: str | None,
    dtype: str | None = None,
    prune: bool = False,
) -> tuple[Path, list[str], FileHashes | None]:
    """Run the planned chain on ``source``; returns the staged output, the step names, and
    the output's hashes when the last step wrote a single file (hashed as it was written).
    The caller owns (and removes) the staging folder, ``output.parent``."""
    start = node_of(art)
    goal = goal or _default_goal(art)
    chain = plan(ctx.converters, start, goal, art["kind"])
    if not chain and not (dtype or prune):
        raise HubError(f"{art['name']} is already {goal}", hint="ask for --dtype or --prune")
    work = ctx.store.staging_dir()
    current, current_art, steps = source, art, []
    hasher = None
    try:
        todo = chain or [None]
        for i, conv in enumerate(todo):
            folder = conv is not None and conv.target == "diffusers"
            out = work / (f"step{i}" + ("" if folder else ".safetensors"))
            last = i == len(todo) - 1 and not folder
            hasher = Hasher(autov3=autov3_in_pass(art["kind"])) if last else None
            job = ConvertJob(current, out, current_art, dtype, prune, hasher)
            if conv is None:
                from hub.plugins.builtin.converters import rewrite

                rewrite(job)
                steps.append("rewrite")
            else:
                conv.run(job)
                steps.append(conv.name)
            best = identify_path(ctx, out).best
            current, current_art = (
                out,
                {
                    **current_art,
                    "format": "diffusers" if out.is_dir() else "safetensors",
                    "layout": best.layout,
                    "kind": str(best.kind) if best.kind != "unknown" else current_art["kind"],
                },
            )
    except BaseException:
        if hasher is not None:
            hasher.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    return current, steps, hasher.finish() if hasher is not None else None


def convert(
    ctx: Context,
    ref: str,
    to: str | None = None,
    dtype: str | None = None,
    prune: bool = False,
    name: str | None = None,
) -> ConvertResult:
    """Convert a registered artifact and register the result (lineage: ``convert``)."""
    from hub.registry.queries import resolve_json

    with ctx.db.reader() as reader:
        art = resolve_json(reader, ref)
    goal = None
    if to is not None:
        if to.lower() not in TARGETS:
            raise HubError(f"unknown target format '{to}'", hint="one of: " + ", ".join(TARGETS))
        goal = TARGETS[to.lower()]
    output, steps, hashes = convert_file(ctx, Path(art["path"]), art, goal, dtype, prune)
    try:
        ident = identify_path(ctx, output)
        if hashes is None:
            if output.is_dir():
                hashes, fstat = hash_folder(output)
            else:
                hashes, fstat = hash_file(output, autov3=autov3_in_pass(art["kind"]))
            size = fstat.size
        else:
            size = output.stat().st_size
        label = "-".join(p for p in (to, dtype, "pruned" if prune else None) if p)
        new_name = name or f"{art['name']}-{label}"
        filename = new_name + ("" if output.is_dir() else ".safetensors")
        overrides = Overrides(name=new_name, base=None)
        lineage = Lineage(
            art["id"],
            art["hashes"]["sha256"],
            "convert",
            {"steps": steps, "to": to, "dtype": dtype, "prune": prune},
        )
        status, artifact = commit(
            ctx,
            output,
            ident,
            hashes,
            size,
            overrides,
            Sidecars(),
            filename,
            source="convert",
            lineage=lineage,
        )
    finally:
        shutil.rmtree(output.parent, ignore_errors=True)
    return ConvertResult(status, artifact, steps)
