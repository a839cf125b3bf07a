"""``hub merge``: bake LoRA-family add-ons into a checkpoint, streaming tensor by tensor from
the checkpoint file; the result records its recipe in A1111's ``sd_merge_recipe`` /
``sd_merge_models`` metadata and in the registry's lineage."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError, UsageError
from hub.core.safetensors_io import FLOAT_ST, cast_checked, dtype_named
from hub.plugins.merging import MergeMethod
from hub.register import Lineage, Overrides
from hub.registry.queries import here, resolve_json
from hub.staging import StagedOutput, staged_output

CHUNK_ELEMENTS = 1 << 22  # elementwise merges work on row slices of about this many values


@dataclass(frozen=True)
class WeightedRef:
    """``REF``, ``REF:W`` or ``REF:TE_W:UNET_W`` (A1111's ``<lora:name:te:unet>``)."""

    ref: str
    te: float = 1.0
    unet: float = 1.0

    @classmethod
    def parse(cls, text: str) -> WeightedRef:
        parts = text.split(":")
        weights: list[float] = []
        while len(parts) > 1 and len(weights) < 2:
            try:
                weights.insert(0, float(parts[-1]))
            except ValueError:
                break
            parts.pop()
        ref = ":".join(parts)
        if not weights:
            return cls(ref)
        return cls(ref, weights[0], weights[1] if len(weights) > 1 else weights[0])


@dataclass(frozen=True)
class MergeResult:
    status: str
    artifact: dict[str, Any]
    reports: list[str]


def _recipe_metadata(
    base: dict[str, Any],
    inputs: list[dict[str, Any]],
    header: dict[str, str],
    recipe: dict[str, Any],
) -> dict[str, str]:
    models: dict[str, Any] = {}
    for art in [base, *inputs]:
        meta = json.loads(art.get("_metadata") or "{}")
        models[art["hashes"]["sha256"]] = {
            "name": art["name"],
            "legacy_hash": art["hashes"]["autov1"],
            "sd_merge_recipe": meta.get("sd_merge_recipe"),
        }
        with contextlib.suppress(ValueError):
            models |= json.loads(meta.get("sd_merge_models") or "{}")
    with contextlib.suppress(ValueError):
        models |= json.loads(header.get("sd_merge_models") or "{}")
    return {"sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


def bake(
    ctx: Context,
    base_ref: str,
    loras: list[WeightedRef],
    name: str,
    unet_only: bool = False,
    output: Path | None = None,
    allow_family: bool = False,
    dtype: str | None = None,
) -> MergeResult:
    """Bake LoRA-family add-ons into a single-file checkpoint and register the result,
    keeping each tensor's dtype (or storing floating ones in ``dtype``). An add-on of a
    family the checkpoint does not take is a warning in the reports (none with
    ``allow_family``)."""
    import torch

    from adapters import patch
    from hub.core import addons
    from hub.core.safetensors_io import SafetensorsReader, TensorSpec, write_safetensors

    st = dtype_named(dtype)

    [base] = _load_meta(ctx, [base_ref], "checkpoint")
    inputs = _load_meta(ctx, [w.ref for w in loras], "lora")
    if base["kind"] != "checkpoint" or base["format"] != "safetensors":
        raise HubError(
            f"{base['name']} is a {base['format']} {base['kind']}; baking needs a "
            "single-file checkpoint",
            hint=f"hub convert {base['name']} --to safetensors",
        )
    for art in inputs:
        if art["kind"] != "lora":
            raise HubError(f"{art['name']} is a {art['kind']}, not a LoRA-family add-on")
    with SafetensorsReader(Path(base["path"])) as ckpt:
        shapes = {k: v.shape for k, v in ckpt.header.tensors.items()}
        reports, texts = [], []
        for art, weights in zip(inputs, loras, strict=True):
            adapter = addons.lora(art)
            rep = addons.fit_lora(base, shapes, art, adapter)
            texts.append(rep.summary())
            reports.append((rep, adapter, 0.0 if unet_only else weights.te, weights.unet))
        changes = patch.plan(reports)
        recipe = {
            "type": "sd-hub",
            "primary_model_hash": base["hashes"]["sha256"],
            "secondary_model_hash": None,
            "tertiary_model_hash": None,
            "interp_method": "No interpolation",
            "multiplier": None,
            "save_as_half": False,
            "custom_name": name,
            "unet_only": unet_only,
            "loras": [
                {"name": a["name"], "sha256": a["hashes"]["sha256"], "te": w.te, "unet": w.unet}
                for a, w in zip(inputs, loras, strict=True)
            ],
        }
        metadata = dict(ckpt.metadata) | _recipe_metadata(base, inputs, ckpt.metadata, recipe)
        lineage = [Lineage(base["id"], base["hashes"]["sha256"], "merge-base", {"recipe": recipe})]
        lineage += [
            Lineage(a["id"], a["hashes"]["sha256"], "merge-lora", {"te": w.te, "unet": w.unet})
            for a, w in zip(inputs, loras, strict=True)
        ]
        with staged_output(ctx) as staged:  # a checkpoint: AutoV3 when asked
            path = staged.folder / f"{name}.safetensors"
            specs = [ckpt.spec(k) for k in ckpt.header.tensors]
            if st is not None:
                specs = [
                    TensorSpec(s.name, st, s.shape) if s.dtype in FLOAT_ST else s for s in specs
                ]

            def produce(spec: TensorSpec) -> Any:
                rows = partial(ckpt.rows, spec.name)
                info = ckpt.header.tensors[spec.name]
                chunks = (  # with a --dtype, float32 chunks rounded once, by cast_checked
                    patch.patched_chunks(rows, info.shape, changes[spec.name], st and torch.float32)
                    if spec.name in changes
                    else [ckpt.tensor(spec.name)]
                )
                return (cast_checked(c, st, spec.name) for c in chunks) if st else chunks

            write_safetensors(path, specs, produce, metadata, hasher=staged.hasher)
            status, artifact = _commit(staged, path, name, lineage, output)
    if not allow_family:
        from hub.families import family_warnings

        texts += [f"warning: {w}" for w in family_warnings(base, inputs)]
    return MergeResult(status, artifact, texts)


def _commit(
    staged: StagedOutput, path: Path, name: str, lineage: list[Lineage], output: Path | None
) -> tuple[str, dict[str, Any]]:
    """Register a merge result (and copy it to ``output``)."""
    return staged.commit(
        path,
        f"{name}.safetensors",
        lineage=lineage,
        source="merge",
        overrides=Overrides(name=name),
        copy_to=output,
    )


def _load_meta(ctx: Context, refs: list[str], kind: str) -> list[dict[str, Any]]:
    """The artifacts refs name (``kind`` expected, see :func:`resolve_json`), each with its
    safetensors header metadata."""
    with ctx.db.reader() as reader:
        arts = [here(resolve_json(reader, r, kind)) for r in refs]
        for art in arts:
            row = reader.rows(
                "SELECT header_metadata FROM artifact WHERE id = :id", {"id": art["id"]}
            )
            art["_metadata"] = row[0]["header_metadata"]
    return arts


def merge_method(ctx: Context, name: str) -> MergeMethod:
    """The loaded merge method called ``name``."""
    methods = merge_methods(ctx)
    if name not in methods:
        raise UsageError(f"unknown merge method '{name}'", hint="methods: " + ", ".join(methods))
    return methods[name]


def merge_methods(ctx: Context) -> dict[str, MergeMethod]:
    """Every merge method the loaded plugins provide, by name."""
    from hub import plugins

    ctx.load_plugins()
    return {n: r.value for n, r in sorted(plugins.collect("register_merge_methods").items())}


def _checked_inputs(ctx: Context, refs: list[str], method: MergeMethod) -> list[dict[str, Any]]:
    """The checkpoints to merge: as many as the method takes, single files of one base."""
    lo, hi = method.inputs
    if not lo <= len(refs) <= hi:
        raise HubError(
            f"{method.name} merges {lo}"
            + (f" to {hi}" if hi != lo else "")
            + f" checkpoints; {len(refs)} given"
        )
    arts = _load_meta(ctx, refs, "checkpoint")
    for art in arts:
        if art["kind"] != "checkpoint" or art["format"] != "safetensors":
            raise HubError(
                f"{art['name']} is a {art['format']} {art['kind']}, not a single-file checkpoint"
            )
        if art["base"] != arts[0]["base"]:
            raise HubError(
                f"cannot merge {arts[0]['name']} ({arts[0]['base']}) with "
                f"{art['name']} ({art['base']}): different architectures"
            )
    return arts


def _check_shapes(readers: list[Any], arts: list[dict[str, Any]]) -> None:
    """Refuse a key whose shape differs between the primary and another input, and inputs
    that share too few keys to be one layout (a BFL and a diffusers Flux file, say)."""
    primary = readers[0]
    for r, art in zip(readers[1:], arts[1:], strict=True):
        shared = primary.header.tensors.keys() & r.header.tensors.keys()
        if len(shared) * 2 < len(primary.header.tensors):
            raise HubError(
                f"{art['name']} shares {len(shared)} of {len(primary.header.tensors)} tensor "
                f"names with {arts[0]['name']}: different layouts "
                f"({art.get('layout') or '?'} and {arts[0].get('layout') or '?'})",
                hint="merge files of one layout",
            )
        for key, info in primary.header.tensors.items():
            other = r.header.tensors.get(key)
            if other is not None and other.shape != info.shape:
                raise HubError(
                    f"{art['name']}: {key} has shape {list(other.shape)}, "
                    f"{arts[0]['name']} has {list(info.shape)}: the "
                    "architectures differ (an inpaint model?)"
                )


def _merged_tensors(
    readers: list[Any],
    method: MergeMethod,
    alpha: float,
    options: dict[str, Any],
    dtype: str | None = None,
) -> Callable[[Any], Any]:
    """The function giving each output tensor (a generator of row slices for elementwise
    methods): keys only in the primary, or not floating point, are copied. Inputs of any
    floating dtype (fp8 included) are read in float32; the result takes ``dtype``, else the
    primary's dtype, rounded as torch's ``.to()`` rounds."""
    import torch

    from adapters.fp8 import upcast

    primary = readers[0]

    def produce(spec: Any) -> Any:
        info = primary.header.tensors[spec.name]
        found = [r.header.tensors.get(spec.name) for r in readers]
        if not all(f is not None and f.dtype in FLOAT_ST for f in found):
            return cast_checked(primary.tensor(spec.name), dtype, spec.name)
        out = dtype or info.dtype
        if not method.elementwise or not info.shape:
            tensors = [upcast(r.tensor(spec.name)) for r in readers]
            with torch.no_grad():
                merged = method.run(tensors, alpha, options, spec.name)
            return cast_checked(merged, out, spec.name)
        row = max(1, info.numel // info.shape[0])
        step = max(1, CHUNK_ELEMENTS // row)
        return _row_slices(readers, spec.name, info.shape[0], step, method, alpha, options, out)

    return produce


def merge_checkpoints(
    ctx: Context,
    refs: list[str],
    method_name: str,
    alpha: float,
    name: str,
    options: Mapping[str, str] | None = None,
    output: Path | None = None,
    dtype: str | None = None,
) -> MergeResult:
    """Merge checkpoints tensor by tensor (primary first) with a merge method and its
    options (``KEY -> text``, validated against what the method declares); keys only in the
    primary are copied; a key whose shape differs between inputs is refused. Floating
    tensors are merged in float32 and stored in ``dtype`` (``bf16``, ``fp8``...) or the
    primary's dtype."""
    from hub.core.safetensors_io import SafetensorsReader, TensorSpec, write_safetensors

    st = dtype_named(dtype)
    method = merge_method(ctx, method_name)
    settings = method.settings(options or {})
    arts = _checked_inputs(ctx, refs, method)
    with contextlib.ExitStack() as opened:
        readers = [opened.enter_context(SafetensorsReader(Path(a["path"]))) for a in arts]
        _check_shapes(readers, arts)
        primary = readers[0]
        recipe = {
            "type": "sd-hub",
            "primary_model_hash": arts[0]["hashes"]["sha256"],
            "secondary_model_hash": arts[1]["hashes"]["sha256"] if len(arts) > 1 else None,
            "tertiary_model_hash": arts[2]["hashes"]["sha256"] if len(arts) > 2 else None,
            "interp_method": method.label,
            "multiplier": alpha,
            "method": method_name,
            **settings,
            "save_as_half": st in ("F16", "BF16"),
            "dtype": st,
            "custom_name": name,
        }
        metadata = _recipe_metadata(arts[0], arts[1:], primary.metadata, recipe)
        lineage = [
            Lineage(
                a["id"],
                a["hashes"]["sha256"],
                "merge",
                {"role": i, "method": method_name, "alpha": alpha, **settings},
            )
            for i, a in enumerate(arts)
        ]
        with staged_output(ctx) as staged:  # a checkpoint: AutoV3 when asked
            path = staged.folder / f"{name}.safetensors"
            specs = [primary.spec(k) for k in primary.header.tensors]
            if st is not None:
                specs = [
                    TensorSpec(s.name, st, s.shape) if s.dtype in FLOAT_ST else s for s in specs
                ]
            write_safetensors(
                path,
                specs,
                _merged_tensors(readers, method, alpha, settings, st),
                metadata,
                hasher=staged.hasher,
            )
            status, artifact = _commit(staged, path, name, lineage, output)
    return MergeResult(status, artifact, [])


def _row_slices(
    readers: list[Any],
    key: str,
    rows: int,
    step: int,
    method: Any,
    alpha: float,
    options: dict[str, Any],
    dtype: str,
) -> Any:
    """An elementwise merge of one tensor in float32, a slice of rows at a time (bounded
    memory), each slice in safetensors dtype ``dtype``."""
    import torch

    from adapters.fp8 import upcast

    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        parts = [upcast(r.rows(key, lo, hi)) for r in readers]
        with torch.no_grad():
            merged = method.run(parts, alpha, options, key)
        yield cast_checked(merged, dtype, key)


def merge_loras(
    ctx: Context,
    loras: list[WeightedRef],
    name: str,
    rank: int | None = None,
    output: Path | None = None,
) -> MergeResult:
    """LoRAs into one: exact concatenation, or an SVD to ``rank``."""
    from adapters import combine
    from adapters import lora as lora_math
    from hub.core import addons
    from hub.core.safetensors_io import TensorSpec, st_dtype, write_safetensors

    arts = _load_meta(ctx, [w.ref for w in loras], "lora")
    bases = {a["base"] for a in arts}
    if any(a["kind"] != "lora" for a in arts) or len(bases) > 1:
        raise HubError(
            "merging LoRAs takes LoRA-family add-ons of one base; got "
            + ", ".join(f"{a['name']} ({a['kind']}, {a['base']})" for a in arts)
        )
    inputs = [(addons.lora(a), w.unet) for a, w in zip(arts, loras, strict=True)]
    try:
        tensors = combine.svd(inputs, rank) if rank else combine.concat(inputs)
    except lora_math.AdapterError as exc:
        raise HubError(
            str(exc),
            hint="convert PEFT files with `hub convert REF --to kohya`; "
            "LyCORIS algorithms merge with --rank R",
        ) from None
    recipe = {
        "type": "sd-hub",
        "method": f"svd-{rank}" if rank else "concat",
        "custom_name": name,
        "loras": [
            {"name": a["name"], "sha256": a["hashes"]["sha256"], "weight": w.unet}
            for a, w in zip(arts, loras, strict=True)
        ],
    }
    metadata = _recipe_metadata(arts[0], arts[1:], {}, recipe) | {
        "ss_network_module": "networks.lora"
    }
    specs = [TensorSpec(k, st_dtype(v), tuple(v.shape)) for k, v in tensors.items()]
    lineage = [
        Lineage(a["id"], a["hashes"]["sha256"], "merge-lora", {"weight": w.unet})
        for a, w in zip(arts, loras, strict=True)
    ]
    with staged_output(ctx, autov3=True) as staged:  # an add-on: AutoV3 in the pass
        path = staged.folder / f"{name}.safetensors"
        write_safetensors(path, specs, lambda s: tensors[s.name], metadata, hasher=staged.hasher)
        status, artifact = _commit(staged, path, name, lineage, output)
    return MergeResult(status, artifact, [])
