"""The UI-layout protocol: how to recognise a web UI's install folder, and which folder of it
lists each kind of model (with the file names that UI's own listing code accepts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Slots a layout may give a folder for: the registry's kinds, plus ``lycoris`` (LoRA-family
# files of any algorithm but plain LoRA, where a UI keeps them apart) and ``diffusers``
# (diffusers folders, linked as a whole).
SLOTS = ("checkpoint", "lora", "lycoris", "embedding", "hypernetwork", "vae", "diffusers")


@dataclass(frozen=True)
class UiFolder:
    """One model folder of a UI: its path under the install root and the name endings the
    UI lists there (empty for a folder of diffusers folders)."""

    path: str
    endings: tuple[str, ...] = ()
    case_sensitive: bool = False  # the UI matches endings without lower-casing the name

    def lists(self, name: str) -> bool:
        """Whether the UI lists a file called ``name`` in this folder."""
        if not self.endings:
            return True
        text = name if self.case_sensitive else name.lower()
        return any(text.endswith(ending) for ending in self.endings)


@dataclass(frozen=True)
class UiLayout:
    """A web UI's folder layout. ``markers`` must all exist under an install root and
    ``excludes`` must not (Forge carries A1111's markers, plus ``modules_forge``)."""

    name: str
    label: str
    markers: tuple[str, ...]
    folders: Mapping[str, UiFolder]
    excludes: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def detect(self, root: Path) -> bool:
        """Whether ``root`` looks like an install of this UI."""
        return all((root / m).exists() for m in self.markers) and not any(
            (root / m).exists() for m in self.excludes
        )

    def slot_for(self, kind: str, algo: str | None, fmt: str) -> str | None:
        """The slot an artifact goes to in this UI, or None when the UI has no folder for it."""
        if fmt == "diffusers":
            slot = "diffusers" if kind == "checkpoint" else None
        elif kind == "lora" and algo not in (None, "lora") and "lycoris" in self.folders:
            slot = "lycoris"
        else:
            slot = kind
        return slot if slot in self.folders else None
