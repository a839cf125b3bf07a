"""Civitai's model types and base-model labels, and how they map to sd-hub's kinds and bases
(docs/SHARE_SITES.md). One table for both sides: the Civitai client reads a site's labels,
``hub serve`` writes them."""

from __future__ import annotations

# sd-hub kind -> the Civitai types that hold it (the first is the one ``hub serve`` writes)
KIND_TYPES = {
    "lora": ["LORA", "LoCon", "DoRA"],
    "embedding": ["TextualInversion"],
    "hypernetwork": ["Hypernetwork"],
    "checkpoint": ["Checkpoint"],
    "dreambooth": ["Checkpoint"],
    "vae": ["VAE"],
}
TYPE_KIND = {
    "LORA": "lora",
    "LoCon": "lora",
    "DoRA": "lora",
    "TextualInversion": "embedding",
    "Hypernetwork": "hypernetwork",
    "Checkpoint": "checkpoint",
    "VAE": "vae",
}
LYCORIS_TYPE = "LoCon"  # Civitai labels LyCORIS files LoCon; the header decides the algo
# the site's own hosts (API, web, and its other domains); a URL on one of them is Civitai's
CIVITAI_HOSTS = frozenset(
    {
        "civitai.com",
        "www.civitai.com",
        "api.civitai.com",
        "civitai.green",
        "www.civitai.green",
        "civitai.red",
        "www.civitai.red",
    }
)
# sd-hub base -> the Civitai ``baseModel`` labels of that base
BASES = {
    "sd1": ("SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"),
    "sd2": ("SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip"),
    "sdxl": (
        "SDXL 0.9",
        "SDXL 1.0",
        "SDXL 1.0 LCM",
        "SDXL Lightning",
        "SDXL Hyper",
        "SDXL Turbo",
        "SDXL Distilled",
        "Pony",
        "Illustrious",
        "NoobAI",
    ),
    "sd3": ("SD 3", "SD 3.5", "SD 3.5 Large", "SD 3.5 Large Turbo", "SD 3.5 Medium"),
}
LABEL_BASE = {label: base for base, labels in BASES.items() for label in labels}
# the label a server speaking Civitai's API publishes for each sd-hub base
BASE_LABEL = {"sd1": "SD 1.5", "sd2": "SD 2.1", "sdxl": "SDXL 1.0", "sdxl-refiner": "SDXL 1.0"}
BASE_LABEL |= {"sd3": "SD 3", "flux": "Flux.1 D"}


# the API's page sizes, and how exactly it knows a file's size
MODELS_PER_REQUEST = 100  # `limit` tops out at 100
HASHES_PER_ID_REQUEST = 10_000
SIZE_KB_SLACK = 1024  # sizeKB is KiB, sometimes rounded: the size is known within 1 KiB


def map_base(label: str | None, base_type: str | None = None) -> str:
    """A Civitai ``baseModel`` label as an sd-hub base (the file's own tensors decide later)."""
    if not label:
        return "unknown"
    if label.startswith("Flux"):
        return "flux"
    base = LABEL_BASE.get(label, "unknown")
    return "sdxl-refiner" if base == "sdxl" and base_type == "Refiner" else base


def kind_type(kind: str) -> str:
    """The Civitai type a server publishes for an sd-hub kind (``Other`` when none fits)."""
    return KIND_TYPES.get(kind, ["Other"])[0]
