"""The built-in family table: Civitai's ``baseModel`` labels (docs/SHARE_SITES.md, "Base
models"), which add-on families each model family takes, the base releases by SHA-256, and
what kohya's and ModelSpec's metadata values say."""

from __future__ import annotations

from hub import hookimpl
from hub.plugins.families import FamilyTable

SD1 = ("SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper")
SD2 = ("SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip")
SDXL = ("SDXL 0.9", "SDXL 1.0", "SDXL 1.0 LCM", "SDXL Lightning", "SDXL Hyper", "SDXL Turbo")
SDXL += ("SDXL Distilled", "Pony", "Illustrious", "NoobAI")
SD3 = ("SD 3", "SD 3.5", "SD 3.5 Large", "SD 3.5 Large Turbo", "SD 3.5 Medium")
FLUX = ("Flux.1 S", "Flux.1 D", "Flux.1 Krea", "Flux.1 Kontext")

BUILTIN = FamilyTable(
    labels={
        **dict.fromkeys(SD1, "sd1"),
        **dict.fromkeys(SD2, "sd2"),
        **dict.fromkeys(SDXL, "sdxl"),
        **dict.fromkeys(SD3, "sd3"),
        **dict.fromkeys(FLUX, "flux"),
    },
    # a model of the key family takes add-ons made for these families too (its own always)
    accepts={
        "SD 1.4": ("SD 1.5",),
        "SD 1.5": ("SD 1.4",),
        "SD 1.5 LCM": ("SD 1.5",),
        "SD 1.5 Hyper": ("SD 1.5",),
        "SD 2.1": ("SD 2.0",),
        "SD 2.1 768": ("SD 2.0 768",),
        "SDXL 1.0": ("SDXL 0.9",),
        "SDXL 1.0 LCM": ("SDXL 1.0",),
        "SDXL Lightning": ("SDXL 1.0",),
        "SDXL Hyper": ("SDXL 1.0",),
        "SDXL Turbo": ("SDXL 1.0",),
        "SDXL Distilled": ("SDXL 1.0",),
        "Illustrious": ("NoobAI",),  # NoobAI is trained from Illustrious
        "NoobAI": ("Illustrious",),
    },
    known_checkpoints={
        # v1-5-pruned-emaonly.safetensors (stable-diffusion-v1-5 on Hugging Face)
        "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa": "SD 1.5",
        # sd_xl_base_1.0.safetensors (stabilityai/stable-diffusion-xl-base-1.0)
        "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b": "SDXL 1.0",
    },
    kohya_versions={
        "sd_v1": "SD 1.5",
        "sd_v2": "SD 2.1",
        "sd_v2_v": "SD 2.1 768",
        "sdxl_base_v1-0": "SDXL 1.0",
    },
    modelspec_architectures={
        "stable-diffusion-v1": "SD 1.5",
        "stable-diffusion-v2-512": "SD 2.1",
        "stable-diffusion-v2-768-v": "SD 2.1 768",
        "stable-diffusion-xl-v1-base": "SDXL 1.0",
    },
)


@hookimpl
def register_families(register):
    register("builtin", BUILTIN)
