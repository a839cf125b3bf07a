"""Registered add-ons read into :mod:`adapters` objects, and checked against a model.

Shared by ``hub merge`` (baking) and ``hub generate`` (patching at inference), so both use the
same parse, the same key resolution and the same compatibility rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core import dit_map, lora_keys
from hub.core.errors import HubError
from hub.core.state_dicts import read_state_dict

if TYPE_CHECKING:  # the adapters (torch) load when an add-on is read, not on import
    from adapters import embedding as embedding_math
    from adapters import hypernetwork as hypernetwork_math
    from adapters import lora as lora_math
    from adapters import patch

Shapes = dict[str, tuple[int, ...]]


def label(art: dict[str, Any]) -> str:
    """``sdxl LoRA``, ``sd1 embedding``: how messages name an artifact's base and kind."""
    kind = {"lora": "LoRA", "checkpoint": "model"}.get(art["kind"], art["kind"])
    return f"{art['base']} {kind}"


def _adapter_error(art: dict[str, Any], exc: Exception) -> HubError:
    return HubError(f"{art['path']}: {exc}")


def lora(art: dict[str, Any]) -> lora_math.Adapter:
    """The LoRA-family adapter of a registered add-on, PEFT scales from its metadata."""
    from adapters import lora as lora_math

    state = read_state_dict(art)  # one open: the tensors and the metadata
    tensors = state.tensors
    config = peft_config(art["path"], state.metadata) if art["format"] == "safetensors" else {}
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
    from adapters import embedding as embedding_math
    from adapters import lora as lora_math

    tensors = read_state_dict(art).tensors
    params = {k: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    try:
        return embedding_math.parse(params or tensors)
    except lora_math.AdapterError as exc:
        raise _adapter_error(art, exc) from None


def hypernetwork(art: dict[str, Any]) -> hypernetwork_math.Hypernetwork:
    """The key/value modules of a registered A1111 hypernetwork."""
    from adapters import hypernetwork as hypernetwork_math
    from adapters import lora as lora_math

    state = read_state_dict(art)
    try:
        return hypernetwork_math.parse(state.tensors, state.fields)
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
    from adapters import patch

    pieces_of = lora_keys.dit_pieces(model["base"], shapes)
    if pieces_of is not None:  # fused <-> split projections as row slices
        if adapter.parsed is None:
            adapter.parsed = adapter.modules
        adapter.modules = dit_map.recut(adapter.parsed, pieces_of, shapes)
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
