"""Built-in converters: pickle -> safetensors, dtype and pruning rewrites, single-file (LDM)
<-> diffusers folders for sd1/sd2/sdxl, and embedding layouts.

Single-file -> diffusers uses diffusers' own conversion functions on configs derived from
the weights; diffusers -> single-file uses adapters.ldm_keys. Writes stream tensor by tensor
where the output is one safetensors file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub import hookimpl
from hub.core import ldm_models, safeload
from hub.core.errors import HubError, InvalidFileError
from hub.core.safetensors_io import (
    FLOAT_ST,
    TORCH_TO_ST,
    SafetensorsReader,
    TensorSpec,
    cast_checked,
    dtype_named,
    st_dtype,
    write_safetensors,
)
from hub.core.state_dicts import PICKLE_FIELDS_META
from hub.plugins.converting import Converter, ConvertJob

PRUNE_PREFIXES = ("model_ema.", "optimizer", "lr_scheduler")
PRUNE_SUFFIXES = ("position_ids",)


def target_dtype(job: ConvertJob) -> str | None:
    return dtype_named(job.dtype)


def _keep(name: str, job: ConvertJob) -> bool:
    if not job.prune or job.artifact["kind"] != "checkpoint":
        return True
    return not (name.startswith(PRUNE_PREFIXES) or name.endswith(PRUNE_SUFFIXES))


def _out_spec(spec: TensorSpec, st: str | None) -> TensorSpec:
    return (
        spec if st is None or spec.dtype not in FLOAT_ST else TensorSpec(spec.name, st, spec.shape)
    )


# --- pickle -> safetensors ------------------------------------------------------------------


def _pickle_names(refs: dict[str, safeload.TensorRef], kind: str) -> dict[str, str]:
    """Output name per pickle path: A1111 embeddings become ``emb_params``."""
    if kind == "embedding":
        params = [k for k in refs if k.startswith("string_to_param.")]
        if len(params) == 1:
            return {params[0]: "emb_params"}
    return {k: k for k in refs}


def pickle_to_safetensors(job: ConvertJob) -> dict[str, Any]:
    with safeload.load(job.source) as loaded:
        refs = loaded.tensor_refs()
        names = _pickle_names(refs, job.artifact["kind"])
        st = target_dtype(job)
        specs: dict[str, TensorSpec] = {}
        by_out: dict[str, safeload.TensorRef] = {}
        for path, ref in refs.items():
            out = names.get(path)
            if out is None or not _keep(out, job):
                continue
            spec = TensorSpec(out, TORCH_TO_ST[ref.dtype.name], ref.shape)
            specs[out] = _out_spec(spec, st)
            by_out[out] = ref
        fields = loaded.plain_fields()
        metadata = {"sd_hub.converted_from": "pickle"}
        if fields:
            metadata[PICKLE_FIELDS_META] = json.dumps(fields, default=str)[: 1 << 20]
        write_safetensors(
            job.output,
            specs.values(),
            lambda s: cast_checked(loaded.tensor(by_out[s.name]), st),
            metadata,
            hasher=job.hasher,
        )
        with SafetensorsReader(job.output) as reader:  # re-read and compare
            import torch

            for name, ref in by_out.items():
                if not torch.equal(reader.tensor(name), cast_checked(loaded.tensor(ref), st)):
                    raise InvalidFileError(job.output, f"tensor {name} differs after writing")
    return {"tensors": len(specs), "dtype": job.dtype, "prune": job.prune}


# --- safetensors rewrite (dtype, prune) ------------------------------------------------------


def rewrite(job: ConvertJob) -> dict[str, Any]:
    st = target_dtype(job)
    with SafetensorsReader(job.source) as reader:
        specs = [_out_spec(reader.spec(n), st) for n in reader.header.tensors if _keep(n, job)]
        write_safetensors(
            job.output,
            specs,
            lambda s: cast_checked(reader.tensor(s.name), st, s.name),
            reader.metadata,
            hasher=job.hasher,
        )
    return {"dtype": job.dtype, "prune": job.prune, "tensors": len(specs)}


# --- single file (LDM) <-> diffusers ------------------------------------------------------------


def _base(job: ConvertJob) -> str:
    base = job.artifact["base"]
    if base not in ldm_models.TEXT_LAYOUT or job.artifact["kind"] != "checkpoint":
        raise HubError(
            f"{job.source}: only sd1, sd2 and sdxl checkpoints convert between "
            f"single-file and diffusers (this is a {base} {job.artifact['kind']})"
        )
    return base


def _save(model: Any, folder: Path, dtype: Any) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code never prints
    if dtype is not None:
        model.to(dtype)
    model.save_pretrained(folder, safe_serialization=True)


def ldm_to_diffusers(job: ConvertJob) -> dict[str, Any]:
    import diffusers
    import torch
    from safetensors.torch import load_file

    base = _base(job)
    st = target_dtype(job)
    dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(st or "")
    parts = ldm_models.components(load_file(job.source), base)
    out = job.output
    index: dict[str, Any] = {
        "_class_name": "StableDiffusionXLPipeline" if base == "sdxl" else "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }
    for name, model in parts.items():
        _save(model, out / name, dtype)
        library = "diffusers" if name in ("unet", "vae") else "transformers"
        index[name] = [library, type(model).__name__]
    index["tokenizer"] = [None, None]
    if base == "sdxl":
        index["tokenizer_2"] = [None, None]
    scheduler = dict(ldm_models.SCHEDULER)
    if job.artifact.get("prediction") == "v":
        scheduler["prediction_type"] = "v_prediction"
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return {"base": base, "dtype": job.dtype}


def diffusers_to_ldm(job: ConvertJob) -> dict[str, Any]:
    base = _base(job)
    state = ldm_models.folder_to_ldm(job.source, base)
    st = target_dtype(job)
    specs = [
        TensorSpec(k, st if st and st_dtype(v) in FLOAT_ST else st_dtype(v), tuple(v.shape))
        for k, v in state.items()
        if _keep(k, job)
    ]
    write_safetensors(
        job.output,
        specs,
        lambda s: cast_checked(state[s.name], st),
        {"sd_hub.converted_from": "diffusers"},
        hasher=job.hasher,
    )
    return {"base": base, "dtype": job.dtype}


# --- embeddings -----------------------------------------------------------------------------


def _embedding_rename(job: ConvertJob, target_name: str) -> dict[str, Any]:
    st = target_dtype(job)
    with SafetensorsReader(job.source) as reader:
        names = list(reader.header.tensors)
        if len(names) != 1:
            raise HubError(
                f"{job.source}: a {len(names)}-tensor embedding has no single-"
                "vector layout to convert to"
            )
        (src_name,) = names
        spec = _out_spec(reader.spec(src_name), st)
        out_name = target_name or job.artifact["name"]
        write_safetensors(
            job.output,
            [TensorSpec(out_name, spec.dtype, spec.shape)],
            lambda s: cast_checked(reader.tensor(src_name), st),
            reader.metadata,
            hasher=job.hasher,
        )
    return {"token": out_name}


def embedding_to_diffusers(job: ConvertJob) -> dict[str, Any]:
    return _embedding_rename(job, f"<{job.artifact['name']}>")


def embedding_to_a1111(job: ConvertJob) -> dict[str, Any]:
    return _embedding_rename(job, "emb_params")


# --- LoRA layouts ---------------------------------------------------------------------------

KOHYA_META = "sd_hub.kohya"  # how the kohya names were spelled, for exact round trips
PEFT_META = "lora_adapter_metadata"
_TE_PREFIXES = {
    "lora_te_": "text_encoder",
    "lora_te1_": "text_encoder",
    "lora_te2_": "text_encoder_2",
}


def _lora_base(job: ConvertJob) -> str:
    base = job.artifact["base"]
    if base not in ("sd1", "sd2", "sdxl"):
        raise HubError(
            f"{job.source}: LoRA layout conversion needs base sd1, sd2 or sdxl (this one is {base})"
        )
    return base


def kohya_to_peft(job: ConvertJob) -> dict[str, Any]:
    from adapters import keys as lk
    from hub.core import lora_keys

    base = _lora_base(job)
    by_diffusers, by_ldm, _ = lora_keys.topology_modules(base)
    st = target_dtype(job)
    with SafetensorsReader(job.source) as reader:
        modules, stray = lk.group_modules({k: v.shape for k, v in reader.header.tensors.items()})
        if stray:
            raise HubError(f"{job.source}: keys outside any module, e.g. {stray[0]}")
        plan_: dict[str, str] = {}
        meta: dict[str, Any] = {}
        style = {"unet": None, "te": {}, "alpha_dtype": None}
        for module, mod in modules.items():
            if lk.module_algo(mod) not in (lk.LORA, lk.LOCON) or set(mod.params) - {
                "lora_down.weight",
                "lora_up.weight",
                "alpha",
            }:
                raise HubError(
                    f"{job.source}: module {module} is not a plain LoRA; the PEFT "
                    "layout holds lora_A/lora_B pairs only"
                )
            if module.startswith("lora_unet_"):
                flat = module.removeprefix("lora_unet_")
                target = by_diffusers.get(flat) or by_ldm.get(flat)
                style["unet"] = "diffusers" if flat in by_diffusers else "ldm"
                component = "unet"
            else:
                prefix = next(p for p in _TE_PREFIXES if module.startswith(p))
                component = _TE_PREFIXES[prefix]
                style["te"][component] = prefix
                target = lora_keys.text_module(module.removeprefix(prefix))
            if target is None:
                raise HubError(f"{job.source}: no {base} module is named {module}")
            name = f"{component}.{target}"
            plan_[f"{name}.lora_A.weight"] = f"{module}.lora_down.weight"
            plan_[f"{name}.lora_B.weight"] = f"{module}.lora_up.weight"
            rank = mod.params["lora_down.weight"][0]
            alpha = rank
            if "alpha" in mod.params:
                alpha_t = reader.tensor(f"{module}.alpha")
                style["alpha_dtype"] = reader.spec(f"{module}.alpha").dtype
                alpha = alpha_t.item() or rank  # kohya reads alpha 0 as the rank
            key = target.removeprefix("text_model.")  # peft matches it as a name suffix
            meta.setdefault(f"{component}.alpha_pattern", {})[key] = alpha
            meta.setdefault(f"{component}.rank_pattern", {})[key] = rank
        for component in {k.split(".", 1)[0] for k in meta}:
            ranks = meta[f"{component}.rank_pattern"]
            meta[f"{component}.r"] = max(ranks.values())
            meta[f"{component}.lora_alpha"] = max(ranks.values())
            meta[f"{component}.target_modules"] = sorted(ranks)  # as diffusers' loader needs
        specs = [replace(_out_spec(reader.spec(old), st), name=new) for new, old in plan_.items()]
        write_safetensors(
            job.output,
            specs,
            lambda s: cast_checked(reader.tensor(plan_[s.name]), st),
            {PEFT_META: json.dumps(meta), KOHYA_META: json.dumps(style)},
            hasher=job.hasher,
        )
    return {"modules": len(modules)}


def peft_to_kohya(job: ConvertJob) -> dict[str, Any]:
    """PEFT pairs to kohya names; each module's PEFT scale (metadata alpha and rank patterns,
    rsLoRA) becomes its ``.alpha`` (= scale x rank), so the weight change is kept."""
    import torch

    from adapters import keys as lk
    from adapters import lora as lora_math
    from hub.core import addons, lora_keys

    base = _lora_base(job)
    by_diffusers, _, to_ldm = lora_keys.topology_modules(base)
    st = target_dtype(job)
    with SafetensorsReader(job.source) as reader:
        config = addons.peft_config(job.source, reader.metadata)
        style = json.loads(reader.metadata.get(KOHYA_META, "{}") or "{}")
        try:
            adapter = lora_math.parse({k: reader.tensor(k) for k in reader.header.tensors}, config)
        except lora_math.AdapterError as exc:
            raise HubError(f"{job.source}: {exc}") from None
        modules, _ = lk.group_modules({k: v.shape for k, v in reader.header.tensors.items()})
        plan_: dict[str, str] = {}
        alphas: dict[str, float] = {}
        unet_style = style.get("unet") or ("ldm" if base == "sdxl" else "diffusers")
        for module, mod in modules.items():
            component, _, target = module.partition(".")
            if component == "unet":
                if target not in to_ldm:
                    raise HubError(f"{job.source}: no {base} UNet module is named {target}")
                flat = to_ldm[target] if unet_style == "ldm" else target.replace(".", "_")
                name = "lora_unet_" + flat
            elif component in ("text_encoder", "text_encoder_2"):
                default = {
                    "text_encoder": "lora_te1_" if base == "sdxl" else "lora_te_",
                    "text_encoder_2": "lora_te2_",
                }[component]
                name = style.get("te", {}).get(component, default) + target.replace(".", "_")
            else:
                raise HubError(f"{job.source}: unknown component in {module}")
            if set(mod.params) != {"lora_A.weight", "lora_B.weight"}:
                raise HubError(
                    f"{job.source}: module {module} is not a plain lora_A/lora_B pair "
                    f"({', '.join(sorted(mod.params))})"
                )
            for suffix, kohya in (
                ("lora_A.weight", "lora_down.weight"),
                ("lora_B.weight", "lora_up.weight"),
            ):
                plan_[f"{name}.{kohya}"] = f"{module}.{suffix}"
            rank = mod.params["lora_A.weight"][0]
            alphas[f"{name}.alpha"] = lora_math.alpha_scale(adapter.modules[module], rank) * rank
        alpha_st = style.get("alpha_dtype") or "F32"
        alpha_dtype = getattr(torch, {v: k for k, v in TORCH_TO_ST.items()}[alpha_st])
        specs = [replace(_out_spec(reader.spec(old), st), name=new) for new, old in plan_.items()]
        specs += [TensorSpec(name, alpha_st, ()) for name in alphas]

        def produce(spec: TensorSpec) -> Any:
            if spec.name in alphas:
                return torch.tensor(alphas[spec.name], dtype=alpha_dtype)
            return cast_checked(reader.tensor(plan_[spec.name]), st)

        metadata = {k: v for k, v in reader.metadata.items() if k not in (PEFT_META, KOHYA_META)}
        write_safetensors(job.output, specs, produce, metadata or None, hasher=job.hasher)
    return {"modules": len(modules)}


_ANY = frozenset({"checkpoint", "lora", "vae", "hypernetwork", "unknown"})
_CKPT, _EMB, _LORA = frozenset({"checkpoint"}), frozenset({"embedding"}), frozenset({"lora"})
_SINGLE_FILE = ("ldm", "single-file")
BUILTIN = [
    Converter("rewrite", "safetensors", "safetensors", 1, rewrite, _ANY | _EMB),
    Converter(
        "pickle-to-safetensors",
        "pickle",
        "safetensors",
        2,
        pickle_to_safetensors,
        _ANY,
        aliases=_SINGLE_FILE,
    ),
    Converter(
        "pickle-embedding-to-safetensors",
        "pickle",
        "a1111-embedding",
        2,
        pickle_to_safetensors,
        _EMB,
        aliases=("a1111",),
    ),
    Converter(
        "ldm-to-diffusers",
        "safetensors",
        "diffusers",
        5,
        ldm_to_diffusers,
        _CKPT,
        writes="diffusers",
        suffix="",
    ),
    Converter(
        "diffusers-to-ldm",
        "diffusers",
        "safetensors",
        3,
        diffusers_to_ldm,
        _CKPT,
        aliases=_SINGLE_FILE,
    ),
    Converter(
        "embedding-to-diffusers",
        "a1111-embedding",
        "diffusers-embedding",
        1,
        embedding_to_diffusers,
        _EMB,
    ),
    Converter(
        "embedding-to-a1111",
        "diffusers-embedding",
        "a1111-embedding",
        1,
        embedding_to_a1111,
        _EMB,
        aliases=("a1111",),
    ),
    Converter("kohya-to-peft", "kohya", "peft", 1, kohya_to_peft, _LORA),
    Converter("peft-to-kohya", "peft", "kohya", 1, peft_to_kohya, _LORA),
]


@hookimpl(trylast=True)
def register_converters(register):
    for converter in BUILTIN:
        register(converter.name, converter)
