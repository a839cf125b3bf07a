"""Registered add-ons read into :mod:`adapters` objects, and checked against a model.

Shared by ``hub merge`` (baking) and ``hub generate`` (patching at inference), so both use the
same parse, the same key resolution and the same compatibility rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters import embedding as embedding_math
from adapters import hypernetwork as hypernetwork_math
from adapters import lora as lora_math
from adapters import patch
from hub.core import lora_keys
from hub.core.errors import HubError

Shapes = dict[str, tuple[int, ...]]


def read_state(art: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An add-on file's tensors (flat names) and plain fields, from safetensors or, through
    the safe unpickler, from a pickle; never executes a pickle."""
    tensors, fields, _ = _read(art)
    return tensors, fields


def _read(art: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """:func:`read_state` and the safetensors metadata ({} for a pickle)."""
    path = Path(art["path"])
    if art["format"] == "safetensors":
        from safetensors import safe_open

        with safe_open(path, "pt") as fh:  # one open for the tensors and the metadata
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            meta = fh.metadata() or {}
        try:
            fields = json.loads(meta.get("sd_hub.pickle_fields") or "{}")
        except ValueError:
            fields = {}
        return tensors, fields, meta
    if art["format"] == "pickle":
        from hub.core import safeload

        with safeload.load(path) as loaded:
            tensors = {k: loaded.tensor(ref) for k, ref in loaded.tensor_refs().items()}
            return tensors, loaded.plain_fields(), {}
    raise HubError(f"{path}: a {art['format']} {art['kind']} cannot be read as an add-on")


def label(art: dict[str, Any]) -> str:
    """``sdxl LoRA``, ``sd1 embedding``: how messages name an artifact's base and kind."""
    kind = {"lora": "LoRA", "checkpoint": "model"}.get(art["kind"], art["kind"])
    return f"{art['base']} {kind}"


def _adapter_error(art: dict[str, Any], exc: Exception) -> HubError:
    return HubError(f"{art['path']}: {exc}")


def lora(art: dict[str, Any]) -> lora_math.Adapter:
    """The LoRA-family adapter of a registered add-on, PEFT scales from its metadata."""
    tensors, _, metadata = _read(art)
    config = peft_config(art["path"], metadata)
    try:
        return lora_math.parse(tensors, config)
    except lora_math.AdapterError as exc:
        raise _adapter_error(art, exc) from None


PEFT_META = "lora_adapter_metadata"


def peft_config(path: str | Path, metadata: dict[str, str] | None) -> dict[str, Any]:
    """diffusers' ``lora_adapter_metadata`` (``<component>.r``, ``.lora_alpha``,
    ``.alpha_pattern``, ...) from a safetensors file's metadata, {} when it has none."""
    text = (metadata or {}).get(PEFT_META)
    try:
        config = json.loads(text) if text else {}
    except ValueError as exc:
        raise HubError(f"{path}: {PEFT_META} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise HubError(f"{path}: {PEFT_META} is not a JSON object")
    return config


def embedding(art: dict[str, Any]) -> embedding_math.Embedding:
    """The textual-inversion vectors of a registered embedding."""
    tensors, _ = read_state(art)
    params = {k: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    try:
        return embedding_math.parse(params or tensors)
    except lora_math.AdapterError as exc:
        raise _adapter_error(art, exc) from None


def hypernetwork(art: dict[str, Any]) -> hypernetwork_math.Hypernetwork:
    """The key/value modules of a registered A1111 hypernetwork."""
    tensors, fields = read_state(art)
    try:
        return hypernetwork_math.parse(tensors, fields)
    except lora_math.AdapterError as exc:
        raise _adapter_error(art, exc) from None


def resolver(base: str, shapes: Shapes) -> patch.Resolver:
    """Adapter module name -> (checkpoint weight key, rows) for a model of ``base``."""

    target_of = lora_keys.targets(base, shapes)

    def resolve(module: str) -> tuple[str, tuple[int, int] | None] | None:
        target = target_of(module)
        return None if target is None else (target.key, target.rows)

    return resolve


def check_base(model: dict[str, Any], art: dict[str, Any]) -> None:
    """Refuse an add-on made for another base (``unknown`` passes to the shape check)."""
    if art["base"] not in ("unknown", model["base"]):
        raise HubError(
            f"{art['name']} is a {label(art)} and does not fit {model['name']} ({label(model)})",
            hint=f"pick a {model['base']} {art['kind']}, or another model",
        )


def fit_lora(
    model: dict[str, Any], shapes: Shapes, art: dict[str, Any], adapter: lora_math.Adapter
) -> patch.Report:
    """The compatibility report of a LoRA-family add-on against a model; a misfit raises
    with the report in the message."""
    rep = patch.report(art["name"], adapter, shapes, resolver(model["base"], shapes))
    if art["base"] not in ("unknown", model["base"]) or not rep.ok:
        raise HubError(
            f"{art['name']} ({label(art)}) does not fit {model['name']} ({label(model)}): "
            f"{rep.summary()}"
        )
    return rep


def fit_embedding(
    model: dict[str, Any], art: dict[str, Any], emb: embedding_math.Embedding
) -> None:
    """Refuse an embedding whose vectors do not match the model's text encoders."""
    if emb.base != model["base"]:
        raise HubError(
            f"{art['name']} holds {emb.base} embedding vectors "
            f"({', '.join(f'{k} {tuple(v.shape)}' for k, v in emb.vectors.items())}) "
            f"and does not fit {model['name']} ({label(model)})"
        )
