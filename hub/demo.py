"""``hub demo``: a small catalog of mini models, and the commands that show sd-hub at work.

Everything is built locally with random weights (no network): a mini-sd1 checkpoint, LoRAs
of two algorithms, an embedding and a VAE, laid out as an A1111 install with sidecars.
"""

from __future__ import annotations

import json
from pathlib import Path

from hub.minimodels import (
    build_components,
    embedding_state,
    lycoris_state,
    to_single_file,
    vae_state,
)


def _preview(path: Path, color: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), color).save(path)


def build_catalog(root: Path) -> dict[str, Path]:
    """Write the demo catalog under ``root`` (an A1111-style tree); returns its files."""
    import torch
    from safetensors.torch import save_file

    models = root / "models"
    files = {
        "checkpoint": models / "Stable-diffusion" / "mini-sd1.safetensors",
        "locon": models / "Lora" / "pixel-art.safetensors",
        "loha": models / "Lora" / "soft-watercolor.safetensors",
        "embedding": root / "embeddings" / "bad-hands.safetensors",
        "vae": models / "VAE" / "mini-vae.safetensors",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    parts = build_components("sd1", seed=0)
    state = {k: v.to(torch.float16) for k, v in to_single_file("sd1", parts).items()}
    save_file(state, files["checkpoint"])
    for key, algo in (("locon", "locon"), ("loha", "loha")):
        tensors, metadata = lycoris_state("sd1", algo)
        save_file(tensors, files[key], metadata=metadata)
    save_file(embedding_state("sd1"), files["embedding"])
    save_file(vae_state(), files["vae"])
    lora = files["locon"].parent
    (lora / "pixel-art.civitai.info").write_text(
        json.dumps(
            {
                "id": 1002,
                "modelId": 1001,
                "name": "v1.0",
                "baseModel": "SD 1.5",
                "trainedWords": ["pixel art", "8bit"],
                "description": "<p>Crisp <b>pixel art</b> for mini models.</p>",
                "model": {"name": "Pixel Art", "type": "LoCon", "nsfw": False},
            }
        )
    )
    _preview(lora / "pixel-art.preview.png", (200, 60, 60))
    (lora / "soft-watercolor.json").write_text(
        json.dumps(
            {
                "description": "Soft watercolor washes.",
                "sd version": "SD1",
                "activation text": "watercolor, soft light",
                "preferred weight": 0.7,
                "notes": "",
            }
        )
    )
    _preview(lora / "soft-watercolor.png", (60, 120, 200))
    return files


def demo_steps(catalog: Path, files: dict[str, Path]) -> list[list[str]]:
    """The commands the demo runs, as a user would type them after ``hub``."""
    return [
        ["scan", str(catalog)],
        ["import", str(files["locon"]), "--tag", "style", "--tag", "pixel"],
        ["tag", "soft-watercolor", "style", "painterly"],
        ["list"],
        ["search", "pixel"],
        ["search", "", "--tag", "style", "--kind", "lora"],
        ["show", "lora:soft-watercolor"],
        ["show", "embedding:bad-hands", "--why"],
        [
            "merge",
            "mini-sd1",
            "--lora",
            "pixel-art:0.8",
            "--lora",
            "soft-watercolor:0.5",
            "--name",
            "mini-sd1-pixel",
        ],
        ["show", "mini-sd1-pixel"],
        ["convert", "bad-hands", "--to", "diffusers-embedding"],
        ["scan", str(catalog)],
        ["verify"],
        ["plugins"],
    ]
