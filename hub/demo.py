"""``hub demo``: a small catalog of mini models, and the commands that show sd-hub at work.

Everything is built locally with random weights (no network): a mini-sd1 checkpoint, LoRAs
of two algorithms, an embedding, a hypernetwork and a VAE, laid out as an A1111 install with
sidecars and previews. A "team" home imports the catalog and serves it with ``hub serve``; the
user's home installs from that server through the normal Civitai client, searches, merges
and generates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hub.minimodels import (
    build_components,
    embedding_state,
    hypernetwork_object,
    lycoris_state,
    to_single_file,
    vae_state,
)

PROMPT = (
    "a castle on a hill, pixel art <lora:pixel-art:0.8> <lora:soft-watercolor:0.5> "
    "<hypernet:anime-lines:0.6>"
)
SIZE = ["-W", "64", "-H", "64", "--steps", "8"]


def _preview(path: Path, color: tuple[int, int, int]) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), color)
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), outline=(255, 255, 255), width=3)
    image.save(path)


def _civitai_info(path: Path, name: str, mtype: str, words: list[str], text: str) -> None:
    path.write_text(
        json.dumps(
            {
                "name": "v1.0",
                "baseModel": "SD 1.5",
                "trainedWords": words,
                "description": f"<p>{text}</p>",
                "model": {"name": name, "type": mtype, "nsfw": False},
            }
        )
    )


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
        "hypernetwork": models / "hypernetworks" / "anime-lines.pt",
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
    torch.save(hypernetwork_object("sd1"), files["hypernetwork"])
    save_file(vae_state(), files["vae"])
    sidecars = {
        "checkpoint": ("Mini SD1", "Checkpoint", [], "A tiny SD1-shaped model."),
        "locon": ("Pixel Art", "LoCon", ["pixel art", "8bit"], "Crisp <b>pixel art</b>."),
        "embedding": ("bad-hands", "TextualInversion", ["bad-hands"], "A negative embedding."),
        "hypernetwork": ("Anime Lines", "Hypernetwork", ["lineart"], "Clean anime lines."),
    }
    colors = {"checkpoint": (90, 90, 90), "locon": (200, 60, 60), "embedding": (60, 160, 60)}
    colors |= {"hypernetwork": (160, 60, 160), "loha": (60, 120, 200)}
    for key, (name, mtype, words, text) in sidecars.items():
        stem = files[key].with_suffix("")
        _civitai_info(stem.with_suffix(".civitai.info"), name, mtype, words, text)
    for key, color in colors.items():
        _preview(files[key].with_suffix(".preview.png"), color)
    (files["loha"].with_suffix(".json")).write_text(
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
    return files


@dataclass(frozen=True)
class Step:
    """One command of the demo: ``args`` after ``hub``, run in the team's or the user's home."""

    args: list[str]
    team: bool = False


def team_steps(files: dict[str, Path]) -> list[Step]:
    """The team's collection: import the catalog into the team home, with tags."""
    tags = {
        "checkpoint": ["base"],
        "locon": ["style", "pixel"],
        "loha": ["style", "painterly"],
        "embedding": ["negative"],
        "hypernetwork": ["style", "lineart"],
        "vae": ["vae"],
    }
    return [
        Step(["import", str(files[k]), *[a for t in tags[k] for a in ("--tag", t)]], team=True)
        for k in tags
    ]


def user_steps(outputs: Path) -> list[Step]:
    """What a user does against the team's server (HUB_CIVITAI_URL points at it)."""
    castle = outputs / "castle.png"
    return [
        Step(["search", "", "--remote", "--tag", "style"]),
        Step(["install", "checkpoint:mini-sd1", "-y"]),
        Step(["install", "lora:pixel-art", "-y"]),
        Step(["install", "lora:soft-watercolor", "-y"]),
        Step(["install", "embedding:bad-hands", "-y"]),
        Step(["install", "hypernetwork:anime-lines", "-y"]),
        Step(["list"]),
        Step(["search", "", "--tag", "style"]),
        Step(["show", "lora:pixel-art"]),
        Step(["merge", "mini-sd1", "--lora", "pixel-art:0.8", "--name", "mini-sd1-pixel"]),
        Step(
            [
                "generate",
                PROMPT,
                "--negative",
                "bad-hands, blurry",
                "--model",
                "mini-sd1",
                "--seed",
                "7",
                *SIZE,
                "-o",
                str(castle),
            ]
        ),
        Step(["generate", "--from", str(castle), "-o", str(outputs / "castle-again.png")]),
        Step(
            [
                "generate",
                "a castle on a hill",
                "--model",
                "mini-sd1-pixel",
                "--sampler",
                "DPM++ 2M Karras",
                "--seed",
                "7",
                *SIZE,
                "-o",
                str(outputs / "castle-baked.png"),
            ]
        ),
        Step(["verify"]),
    ]
