"""Built-in UI layouts: A1111, Forge, SD.Next, ComfyUI, Fooocus, SwarmUI (docs/UIS.md §1-3).

Folders and name endings follow each UI's own listing code: A1111 ``modules/sd_models.py``
(``.ckpt .safetensors``), ``extensions-builtin/Lora`` (``.pt .ckpt .safetensors`` from
``models/Lora`` and ``models/LyCORIS``), ``textual_inversion.py`` (``.pt .bin .safetensors``),
hypernetworks and VAE by case-sensitive globs; Forge adds ``.gguf`` checkpoints and reads
LoRA from ``models/Lora`` only; ComfyUI ``folder_paths.supported_pt_extensions`` for every
kind; Fooocus ``get_model_filenames`` (lower-cased endings); SwarmUI's
``T2IModelHandler`` (case-sensitive extensions); SD.Next's own ``modules/`` listings
(checkpoints and VAE ``.safetensors`` only).
"""

from __future__ import annotations

from collections.abc import Callable

from hub import hookimpl
from hub.plugins.ui_layouts import UiFolder, UiLayout

_A1111_CKPT = (".ckpt", ".safetensors")
_A1111_LORA = (".pt", ".ckpt", ".safetensors")
_A1111_EMB = (".pt", ".bin", ".safetensors")
_A1111_VAE = (".ckpt", ".pt", ".safetensors")
_A1111_MARKERS = ("webui.py", "launch.py", "modules/paths_internal.py")

A1111 = UiLayout(
    name="a1111",
    label="AUTOMATIC1111 stable-diffusion-webui",
    markers=_A1111_MARKERS,
    excludes=("modules_forge", "modules/sd_checkpoint.py"),
    folders={
        "checkpoint": UiFolder("models/Stable-diffusion", _A1111_CKPT),
        "lora": UiFolder("models/Lora", _A1111_LORA),
        "lycoris": UiFolder("models/LyCORIS", _A1111_LORA),
        "embedding": UiFolder("embeddings", _A1111_EMB),
        "hypernetwork": UiFolder("models/hypernetworks", (".pt",), case_sensitive=True),
        "vae": UiFolder("models/VAE", _A1111_VAE, case_sensitive=True),
    },
)

FORGE = UiLayout(
    name="forge",
    label="Stable Diffusion WebUI Forge (and reForge)",
    markers=(*_A1111_MARKERS, "modules_forge"),
    excludes=("modules/sd_checkpoint.py",),
    folders={
        "checkpoint": UiFolder("models/Stable-diffusion", (*_A1111_CKPT, ".gguf")),
        "lora": UiFolder("models/Lora", _A1111_LORA),
        "embedding": UiFolder("embeddings", _A1111_EMB),
        "hypernetwork": UiFolder("models/hypernetworks", (".pt",), case_sensitive=True),
        "vae": UiFolder(
            "models/VAE", ("ckpt", "pt", "bin", "safetensors", "gguf"), case_sensitive=True
        ),
    },
)

SDNEXT = UiLayout(
    name="sdnext",
    label="SD.Next",
    markers=("installer.py", "launch.py", "webui.py", "modules/sd_checkpoint.py"),
    folders={
        "checkpoint": UiFolder("models/Stable-diffusion", (".safetensors",), case_sensitive=True),
        "lora": UiFolder("models/Lora", _A1111_LORA, case_sensitive=True),
        "embedding": UiFolder("models/embeddings", (".safetensors", ".pt"), case_sensitive=True),
        "vae": UiFolder("models/VAE", (".safetensors",), case_sensitive=True),
        "diffusers": UiFolder("models/Diffusers"),
    },
)

_COMFY = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")
COMFYUI = UiLayout(
    name="comfyui",
    label="ComfyUI",
    markers=("main.py", "folder_paths.py", "comfy"),
    folders={
        "checkpoint": UiFolder("models/checkpoints", _COMFY),
        "lora": UiFolder("models/loras", _COMFY),
        "embedding": UiFolder("models/embeddings", _COMFY),
        "hypernetwork": UiFolder("models/hypernetworks", _COMFY),
        "vae": UiFolder("models/vae", _COMFY),
        "diffusers": UiFolder("models/diffusers"),
    },
)

_FOOOCUS = (".pth", ".ckpt", ".bin", ".safetensors", ".fooocus.patch")
FOOOCUS = UiLayout(
    name="fooocus",
    label="Fooocus",
    markers=("entry_with_update.py", "fooocus_version.py"),
    folders={
        "checkpoint": UiFolder("models/checkpoints", _FOOOCUS),
        "lora": UiFolder("models/loras", _FOOOCUS),
        "embedding": UiFolder("models/embeddings", (".safetensors", ".pt", ".bin")),
        "vae": UiFolder("models/vae", _FOOOCUS),
    },
    notes=("Fooocus does not follow linked subfolders: files are linked one by one",),
)

_SWARM = (".safetensors", ".sft", ".engine", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
SWARMUI = UiLayout(
    name="swarmui",
    label="SwarmUI",
    markers=("src/SwarmUI.csproj",),
    folders={
        "checkpoint": UiFolder("Models/Stable-Diffusion", _SWARM, case_sensitive=True),
        "lora": UiFolder("Models/Lora", _SWARM, case_sensitive=True),
        "embedding": UiFolder("Models/Embeddings", _SWARM, case_sensitive=True),
        "vae": UiFolder("Models/VAE", _SWARM, case_sensitive=True),
    },
)


@hookimpl
def register_ui_layouts(register: Callable[[str, UiLayout], None]) -> None:
    for layout in (A1111, FORGE, SDNEXT, COMFYUI, FOOOCUS, SWARMUI):
        register(layout.name, layout)
