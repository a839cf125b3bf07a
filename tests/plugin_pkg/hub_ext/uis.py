"""A UI layout for the made-up ExtTool: an install holds ``exttool.toml`` (and not
``legacy.txt``); it lists LoRAs from ``adapters/`` (``.safetensors`` only) and checkpoints
from ``weights/`` (``.ckpt`` only), and has no folder for any other kind."""

from __future__ import annotations

import hub
from hub.plugins.ui_layouts import UiFolder, UiLayout

EXTTOOL = UiLayout(
    name="exttool",
    label="ExtTool",
    markers=("exttool.toml",),
    excludes=("legacy.txt",),
    folders={
        "lora": UiFolder("adapters", (".safetensors",)),
        "checkpoint": UiFolder("weights", (".ckpt",)),
    },
)


@hub.hookimpl
def register_ui_layouts(register):
    register(EXTTOOL.name, EXTTOOL)
