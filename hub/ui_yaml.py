"""``hub ui yaml``: point a ComfyUI install at sd-hub's store through a section of its own
``extra_model_paths.yaml`` (docs/UIS.md §4), instead of linking files into its folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hub.context import Context
from hub.core.errors import HubError
from hub.core.managed_block import drop_block, put_block, write_atomically
from hub.uis import get_ui

COMFY_YAML = "extra_model_paths.yaml"
COMFY_SECTION = "sd_hub"
_BEGIN = "# >>> sd-hub: written by `hub ui yaml`, replaced on every run; edit outside >>>"
_END = "# <<< sd-hub <<<"
# ComfyUI folder kind -> the store's kind (the store keeps A1111's folder names).
_COMFY_KINDS = {
    "checkpoints": "checkpoint",
    "diffusers": "checkpoint",
    "loras": "lora",
    "embeddings": "embedding",
    "hypernetworks": "hypernetwork",
    "vae": "vae",
}


def comfy_section(ctx: Context) -> str:
    """The ``extra_model_paths.yaml`` section naming sd-hub's store folders (values are
    double-quoted: a JSON string is a YAML double-quoted scalar)."""
    store = ctx.store
    lines = [f"{COMFY_SECTION}:", f"    base_path: {json.dumps(str(store.root))}"]
    for comfy_kind, kind in _COMFY_KINDS.items():
        lines.append(f"    {comfy_kind}: {json.dumps(store.folder(kind).name)}")
    return "\n".join(lines)


def write_comfy_yaml(ctx: Context, name: str, remove: bool = False, dry_run: bool = False) -> dict:
    """Write (or ``remove``) sd-hub's section of a ComfyUI install's
    ``extra_model_paths.yaml``, keeping every other line of the file as it is."""
    ui = get_ui(ctx, name)
    if ui["type"] != "comfyui":
        raise HubError(f"UI '{name}' is {ui['type']}, not comfyui", hint="use `hub ui link`")
    path = Path(ui["path"]) / COMFY_YAML
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise HubError(f"{path}: cannot read: {exc}") from None
    if remove:
        new = drop_block(old, _BEGIN, _END, path)
    else:
        outside = drop_block(old, _BEGIN, _END, path)
        if re.search(rf"^{COMFY_SECTION}\s*:", outside, re.MULTILINE):
            raise HubError(
                f"{path}: has a '{COMFY_SECTION}:' section sd-hub did not write",
                hint="rename or remove it, then run again",
            )
        new = put_block(old, _BEGIN, _END, comfy_section(ctx), path)
    status = "unchanged" if new == old else "removed" if remove else "written"
    if status != "unchanged" and not dry_run:
        write_atomically(path, new)
    return {"ui": name, "path": str(path), "status": status, "dry_run": dry_run}
