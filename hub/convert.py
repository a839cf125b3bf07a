"""``hub convert``: plan a chain of converter plugins, run it in the staging folder, and
register the result with lineage to its source. Nothing appears in the store or the registry
until the last step has finished.

The formats are the ones the loaded converters declare (:func:`hub.plugins.converting.targets`);
an output no probe can read (a plugin's own format) keeps the input's kind and base."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.sidecars import Sidecars
from hub.core.taxonomy import Base, Format, Kind
from hub.plugins.converting import Converter, ConvertJob, node_of, plan, rewriter, targets
from hub.plugins.probing import Identification, Verdict
from hub.register import Lineage, Overrides, autov3_in_pass, identify_path
from hub.staging import StagedOutput, staged_output

PROBED_FORMATS = {str(f) for f in Format if f is not Format.UNKNOWN}


@dataclass(frozen=True)
class ConvertResult:
    status: str
    artifact: dict[str, Any]
    steps: list[str]


@dataclass(frozen=True)
class Converted:
    """The last output of a chain, what it is, and the steps that made it."""

    path: Path
    ident: Identification
    steps: list[str]


def _default_goal(art: dict[str, Any]) -> str:
    if art["format"] == "pickle":
        return "a1111-embedding" if art["kind"] == "embedding" else "safetensors"
    return node_of(art)


def _identify_output(
    ctx: Context, path: Path, conv: Converter, source: dict[str, Any]
) -> Identification:
    """What a step wrote: the probes' answer for a format they read; otherwise, or when they
    cannot tell its kind, the kind and base of the step's input carry over."""
    found = None
    if conv.writes in PROBED_FORMATS:
        found = identify_path(ctx, path)
        if found.best.kind is not Kind.UNKNOWN:
            return found
    carried = Verdict(
        "convert",
        False,
        f"no probe recognised the {conv.writes} output of {conv.name}; kind and base "
        f"carried over from {source['name']}",
        kind=Kind(source["kind"]),
        base=Base(source["base"]),
        prediction=source.get("prediction"),
    )
    if found is None:
        return Identification(carried, conv.writes)
    return Identification(carried, found.format, found.verdicts, found.metadata)


def _chain(ctx: Context, art: dict[str, Any], goal: str | None, rewrite: bool) -> list[Converter]:
    goal = goal or _default_goal(art)
    chain = plan(ctx.converters, node_of(art), goal, art["kind"])
    if chain:
        return chain
    if not rewrite:
        raise HubError(f"{art['name']} is already {goal}", hint="ask for --dtype or --prune")
    same = rewriter(ctx.converters, art)
    if same is None:
        raise HubError(
            f"no converter rewrites {art['name']} ({art['format']}) in place",
            hint="see `hub plugins` for the converters that are loaded",
        )
    return [same]


def convert_file(
    ctx: Context,
    staged: StagedOutput,
    source: Path,
    art: dict[str, Any],
    goal: str | None,
    dtype: str | None = None,
    prune: bool = False,
) -> Converted:
    """Run the planned chain (or the in-place rewrite, for ``dtype``/``prune`` alone) on
    ``source`` inside ``staged.folder``; the last step feeds ``staged.hasher``."""
    chain = _chain(ctx, art, goal, bool(dtype or prune))
    current, current_art, steps = source, art, []
    ident = None
    for i, conv in enumerate(chain):
        out = staged.folder / f"step{i}{conv.suffix}"
        last = i == len(chain) - 1
        hasher = staged.hasher if last and conv.suffix else None
        conv.run(ConvertJob(current, out, current_art, dtype, prune, hasher))
        steps.append(conv.name)
        ident = _identify_output(ctx, out, conv, current_art)
        current, current_art = (
            out,
            {
                **current_art,
                "format": str(ident.format),
                "layout": ident.best.layout,
                "kind": str(ident.best.kind),
                "base": str(ident.best.base),
            },
        )
    assert ident is not None  # a chain has at least one step
    return Converted(current, ident, steps)


def ingest_pickle(
    ctx: Context,
    path: Path,
    ident: Identification,
    name: str,
    kind: str,
    pickle_sha256: str,
    overrides: Overrides,
    sidecars: Sidecars,
    source: str = "local",
    parent_id: int | None = None,
) -> tuple[str, dict[str, Any], list[str]]:
    """Register a pickle as the safetensors file converted from it (read by the safe
    unpickler), with the pickle's hash (and ``parent_id``, when the pickle is registered
    too) in its lineage. ``ident`` is the pickle's identification, ``kind`` the kind it is
    registered as. Returns the commit status, the artifact and the conversion steps."""
    art = {
        "name": name,
        "kind": kind,
        "base": str(ident.best.base),
        "format": "pickle",
        "layout": ident.best.layout,
        "prediction": ident.best.prediction,
    }
    with staged_output(ctx, autov3_in_pass(art["kind"])) as staged:
        result = convert_file(ctx, staged, path, art, goal=None)
        lineage = Lineage(parent_id, pickle_sha256, "convert", {"steps": result.steps})
        status, artifact = staged.commit(
            result.path,
            f"{art['name']}.safetensors",
            lineage=lineage,
            source=source,
            overrides=overrides,
            sidecars=sidecars,
            ident=result.ident,
        )
    return status, artifact, result.steps


def convert(
    ctx: Context,
    ref: str,
    to: str | None = None,
    dtype: str | None = None,
    prune: bool = False,
    name: str | None = None,
) -> ConvertResult:
    """Convert a registered artifact and register the result (lineage: ``convert``)."""
    from hub.registry.queries import here, resolve_json

    with ctx.db.reader() as reader:
        art = here(resolve_json(reader, ref))
    goal = None
    if to is not None:
        names = targets(ctx.converters)
        if to.lower() not in names:
            raise HubError(f"unknown target format '{to}'", hint="one of: " + ", ".join(names))
        goal = names[to.lower()]
    with staged_output(ctx, autov3_in_pass(art["kind"])) as staged:
        result = convert_file(ctx, staged, Path(art["path"]), art, goal, dtype, prune)
        label = "-".join(p for p in (to, dtype, "pruned" if prune else None) if p)
        new_name = name or f"{art['name']}-{label}"
        suffix = "" if result.path.is_dir() else "".join(result.path.suffixes[-1:])
        lineage = Lineage(
            art["id"],
            art["hashes"]["sha256"],
            "convert",
            {"steps": result.steps, "to": to, "dtype": dtype, "prune": prune},
        )
        status, artifact = staged.commit(
            result.path,
            new_name + suffix,
            lineage=lineage,
            source="convert",
            overrides=Overrides(name=new_name),
            ident=result.ident,
        )
    return ConvertResult(status, artifact, result.steps)
