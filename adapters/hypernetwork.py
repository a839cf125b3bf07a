"""A1111 hypernetworks (FORMATS.md §6): per context width, a pair of small MLPs applied to
the keys' and values' context as ``x + mlp(x) * strength``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
        return self.transform(context, 0, strength), self.transform(context, 1, strength)

    def transform(self, context: torch.Tensor, side: int, strength: float) -> torch.Tensor:
        """``context + mlp(context) * strength`` with the key (0) or value (1) module of the
        context's width; unchanged when the network has no entry for that width."""
        pair = self.layers.get(context.shape[-1])
        if pair is None:
            return context
        mlp = pair[side]
        return context + mlp(context) * strength

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Hypernetwork:
        """This network with its modules moved to ``device`` and ``dtype``."""
        for k, v in self.layers.values():
            k.to(device, dtype)
            v.to(device, dtype)
        return self


class HypernetworkProjection(torch.nn.Module):
    """An attention layer's key or value projection with hypernetworks applied to its input
    in sequence (A1111: ``k = to_k(h_k(context))``)."""

    def __init__(
        self, projection: torch.nn.Module, side: int, networks: list[tuple[Hypernetwork, float]]
    ) -> None:
        super().__init__()
        self.projection = projection
        self.side = side
        self.networks = networks

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        for net, strength in self.networks:
            context = net.transform(context, self.side, strength)
        return self.projection(context)


@contextmanager
def attached(model: torch.nn.Module, networks: list[tuple[Hypernetwork, float]]) -> Iterator[int]:
    """Run ``networks`` inside every attention layer of ``model`` (any module with ``to_k``
    and ``to_v`` projections, self-attention included) until exit; yields the layer count."""
    layers = [m for m in model.modules() if hasattr(m, "to_k") and hasattr(m, "to_v")]
    originals = [(m, m.to_k, m.to_v) for m in layers]
    try:
        if networks:
            for m, k, v in originals:
                m.to_k = HypernetworkProjection(k, 0, networks)
                m.to_v = HypernetworkProjection(v, 1, networks)
        yield len(layers) if networks else 0
    finally:
        for m, k, v in originals:
            m.to_k, m.to_v = k, v


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
