"""A1111 hypernetworks (FORMATS.md §6): per context width, a pair of small MLPs applied to
the keys' and values' context as ``x + mlp(x) * strength``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from adapters.lora import AdapterError

ACTIVATIONS = {
    "linear": None,
    "relu": torch.nn.ReLU,
    "leakyrelu": torch.nn.LeakyReLU,
    "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
}
_KEY = re.compile(r"^(\d+)\.([01])\.(.+)$")


def _activation(name: str | None) -> torch.nn.Module | None:
    if name in (None, "linear"):
        return None
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]()
    for attr in dir(torch.nn.modules.activation):  # any torch activation by lower-case name
        if attr.lower() == name:
            return getattr(torch.nn.modules.activation, attr)()
    raise AdapterError(f"unknown hypernetwork activation '{name}'")


def build_mlp(
    state: Mapping[str, torch.Tensor], width: int, fields: Mapping[str, Any]
) -> torch.nn.Sequential:
    """One module as A1111 builds it, loaded from ``linear.<i>.weight|bias`` keys."""
    structure = list(fields.get("layer_structure") or [1, 2, 1])
    activate_output = fields.get("activate_output", True)
    layer_norm = bool(fields.get("is_layer_norm", False))
    dropout = fields.get("dropout_structure") if fields.get("use_dropout") else None
    layers: list[torch.nn.Module] = []
    for i in range(len(structure) - 1):
        layers.append(torch.nn.Linear(int(width * structure[i]), int(width * structure[i + 1])))
        act = _activation(fields.get("activation_func"))
        if act is not None and (i < len(structure) - 2 or activate_output):
            layers.append(act)
        if layer_norm:
            layers.append(torch.nn.LayerNorm(int(width * structure[i + 1])))
        if dropout and i + 1 < len(dropout) and dropout[i + 1] > 0:
            layers.append(torch.nn.Dropout(p=float(dropout[i + 1])))
    mlp = torch.nn.Sequential(*layers)
    names = {
        k.replace("linear1.", "linear.0.").replace("linear2.", "linear.1."): v
        for k, v in state.items()
    }
    want = {f"linear.{k}" for k in mlp.state_dict()}
    if set(names) != want:
        raise AdapterError(
            f"hypernetwork width {width}: keys {sorted(names)[:4]} do not match "
            f"layer_structure {structure}"
        )
    mlp.load_state_dict({k.removeprefix("linear."): v for k, v in names.items()})
    return mlp.eval()


@dataclass
class Hypernetwork:
    """The key and value modules per context width."""

    layers: dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]]

    def apply(self, context: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The (key context, value context) for ``context``; widths without an entry pass."""
        pair = self.layers.get(context.shape[-1])
        if pair is None:
            return context, context
        k, v = pair
        return context + k(context) * strength, context + v(context) * strength


def parse(tensors: Mapping[str, torch.Tensor], fields: Mapping[str, Any]) -> Hypernetwork:
    """From flattened keys ``<width>.<0|1>.linear.<i>.<weight|bias>`` and the file's plain
    fields (layer_structure, activation_func, is_layer_norm, ...)."""
    grouped: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if not m:
            raise AdapterError(f"{key} is not a hypernetwork key")
        grouped.setdefault(int(m[1]), {}).setdefault(int(m[2]), {})[m[3]] = value
    layers = {}
    for width, sides in grouped.items():
        if set(sides) != {0, 1}:
            raise AdapterError(f"hypernetwork width {width} lacks its key or value module")
        layers[width] = (build_mlp(sides[0], width, fields), build_mlp(sides[1], width, fields))
    return Hypernetwork(layers)
