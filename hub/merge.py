"""``hub merge``: bake LoRA-family add-ons into a checkpoint, streaming tensor by tensor from
the checkpoint file; the result records its recipe in A1111's ``sd_merge_recipe`` /
``sd_merge_models`` metadata and in the registry's lineage."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.errors import HubError
from hub.register import Lineage, Overrides, commit, identify_path
from hub.registry.queries import resolve_json
from hub.sidecars import Sidecars


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
) -> MergeResult:
    """Bake LoRA-family add-ons into a single-file checkpoint and register the result."""
    from safetensors.torch import load_file

    from adapters import lora as lora_math
    from adapters import patch
    from hub import lora_keys
    from hub.hashing import hash_file
    from hub.safetensors_io import SafetensorsReader, write_safetensors

    with ctx.db.reader() as reader:
        base = resolve_json(reader, base_ref)
        inputs = [resolve_json(reader, w.ref) for w in loras]
        for art in [base, *inputs]:
            row = reader.rows(
                "SELECT header_metadata FROM artifact WHERE id = :id", {"id": art["id"]}
            )
            art["_metadata"] = row[0]["header_metadata"]
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
            try:
                adapter = lora_math.parse(load_file(art["path"]))
            except lora_math.AdapterError as exc:
                raise HubError(f"{art['path']}: {exc}") from None
            rep = patch.report(
                art["name"], adapter, shapes, lambda m: _resolve(lora_keys, m, base["base"], shapes)
            )
            texts.append(rep.summary())
            if art["base"] not in ("unknown", base["base"]) or not rep.ok:
                raise HubError(
                    f"{art['name']} ({art['base']} LoRA) does not fit "
                    f"{base['name']} ({base['base']} checkpoint): {rep.summary()}"
                )
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
        work = ctx.store.staging_dir()
        staged = work / f"{name}.safetensors"
        try:
            specs = [ckpt.spec(k) for k in ckpt.header.tensors]
            write_safetensors(
                staged,
                specs,
                lambda s: (
                    patch.patched(ckpt.tensor(s.name), changes[s.name])
                    if s.name in changes
                    else ckpt.tensor(s.name)
                ),
                metadata,
            )
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    try:
        if output is not None:
            shutil.copyfile(staged, output)
        ident = identify_path(ctx, staged)
        hashes, fstat = hash_file(staged)
        lineage = [Lineage(base["id"], base["hashes"]["sha256"], "merge-base", {"recipe": recipe})]
        lineage += [
            Lineage(a["id"], a["hashes"]["sha256"], "merge-lora", {"te": w.te, "unet": w.unet})
            for a, w in zip(inputs, loras, strict=True)
        ]
        status, artifact = commit(
            ctx,
            staged,
            ident,
            hashes,
            fstat.size,
            Overrides(name=name),
            Sidecars(),
            f"{name}.safetensors",
            source="merge",
            lineage=lineage,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return MergeResult(status, artifact, texts)


def _resolve(
    lora_keys: Any, module: str, base: str, shapes: dict[str, tuple[int, ...]]
) -> tuple[str, tuple[int, int] | None] | None:
    target = lora_keys.target_of(module, base, shapes)
    return None if target is None else (target.key, target.rows)
