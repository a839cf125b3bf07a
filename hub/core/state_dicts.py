"""A registered artifact's tensors read by its format: the one reader that add-ons, the
inference backend and shape checks share. Single files keep their own key names; a diffusers
folder is read as the single-file (LDM) state dict; a pickle goes through the safe unpickler,
never executed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidFileError

PICKLE_FIELDS_META = "sd_hub.pickle_fields"  # a converted pickle's plain fields (JSON)


@dataclass(frozen=True)
class StateDict:
    """Tensors by name (shape tuples when read with ``shapes_only``) and the plain fields
    stored beside them (a pickle's non-tensor data)."""

    tensors: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # a safetensors file's own


def read_state_dict(
    artifact: dict[str, Any],
    shapes_only: bool = False,
    keep: Callable[[str], bool] | None = None,
) -> StateDict:
    """The tensors of a registered artifact (its registry JSON): every key, or those ``keep``
    accepts; ``shapes_only`` reads shapes from headers and loads no tensor data."""
    path = Path(artifact["path"])
    wanted = keep or (lambda _key: True)
    fmt = artifact["format"]
    if fmt == "safetensors":
        return _safetensors(path, shapes_only, wanted)
    if fmt == "diffusers" and artifact["base"] in ("flux", "sd3"):  # the transformer alone
        from hub.core.ldm_models import component_weights

        state = component_weights(path / "transformer", meta=shapes_only)
        return StateDict(
            {k: tuple(v.shape) if shapes_only else v for k, v in state.items() if wanted(k)}
        )
    if fmt == "diffusers":
        from hub.core.ldm_models import folder_to_ldm

        state = folder_to_ldm(path, artifact["base"], meta=shapes_only)
        return StateDict(
            {k: tuple(v.shape) if shapes_only else v for k, v in state.items() if wanted(k)}
        )
    if fmt == "pickle":
        from hub.core import safeload

        with safeload.load(path) as loaded:
            refs = {k: r for k, r in loaded.tensor_refs().items() if wanted(k)}
            if shapes_only:
                return StateDict({k: tuple(r.shape) for k, r in refs.items()})
            return StateDict({k: loaded.tensor(r) for k, r in refs.items()}, loaded.plain_fields())
    raise InvalidFileError(path, f"sd-hub cannot read the tensors of a {fmt} {artifact['kind']}")


def shapes(artifact: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """A registered model's tensor shapes (single-file names), without loading its weights."""
    return read_state_dict(artifact, shapes_only=True).tensors


def _safetensors(path: Path, shapes_only: bool, wanted: Callable[[str], bool]) -> StateDict:
    if shapes_only:
        from hub.core.formats import read_header

        header = read_header(path)
        return StateDict({k: tuple(v.shape) for k, v in header.tensors.items() if wanted(k)})
    from safetensors import safe_open

    with safe_open(path, "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys() if wanted(k)}  # noqa: SIM118
        meta = fh.metadata() or {}
    try:
        fields = json.loads(meta.get(PICKLE_FIELDS_META) or "{}")
    except ValueError:
        fields = {}
    return StateDict(tensors, fields if isinstance(fields, dict) else {}, meta)
