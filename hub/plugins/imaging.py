"""The image-reader protocol: what a reader sees (:class:`ImageMetadata`) and answers (an
:class:`ImageRecord`, or a :class:`Declined` with the reason).

Every registered reader runs on every image; the matching record with the highest ``score``
wins, and every reader's answer is kept for ``--json``. A reader never raises for bad input:
it declines (not its format) or returns a record with ``notes`` (its format, partly damaged).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

RESOURCE_KINDS = ("checkpoint", "vae", "lora", "embedding", "hypernetwork")
# How a hash in metadata was computed (FORMATS.md §8): sha256 (64 hex of the whole file),
# autov1 (8 hex), autov2 (first 10 hex of sha256), autov3 (12 or 64 hex of the tensor
# data; for a non-safetensors add-on A1111 writes sha256 instead), sha256_12 (A1111
# ``TI hashes``: first 12 hex of sha256), blake3 (64 hex of the whole file).
HASH_FORMS = ("sha256", "autov1", "autov2", "autov3", "sha256_12", "blake3")


@dataclass(frozen=True)
class ImageMetadata:
    """The raw metadata of one image: text entries by keyword, as the container holds them.

    PNG ``tEXt``/``zTXt``/``iTXt`` chunks keep their keyword; EXIF ``UserComment`` (decoded)
    is under ``UserComment``, other EXIF text tags under their names (``Make``, ``Model``,
    ``ImageDescription``, ``Software``, ``MakerNote``), XMP under ``XMP``.
    """

    path: str
    container: str  # "png", "jpeg", "webp", ...
    text: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # entries skipped, and why


@dataclass
class Resource:
    """One file the image names: checkpoint, VAE, LoRA-family add-on, embedding, hypernetwork.

    ``hashes`` maps a form of :data:`HASH_FORMS` to the hex the image gives; ``strength`` is
    the model (UNet) strength, ``clip_strength`` the text-encoder one (None: same or n/a).
    """

    kind: str
    name: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    version_id: int | None = None  # a share-site version id (Civitai ``modelVersionId``)
    strength: float | None = None
    clip_strength: float | None = None
    origin: str = ""  # where in the metadata it was found


@dataclass
class ImageRecord:
    """What a reader found: the tool, the settings, the resources and every other field."""

    reader: str
    tool: str
    version: str | None = None
    prompt: str | None = None
    negative: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None
    guidance: float | None = None  # Flux's distilled CFG scale
    resources: list[Resource] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, kept as read
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    score: int = 50  # confidence; the best-scoring record of all readers wins

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Declined:
    """A reader's "not mine", with the reason."""

    reader: str
    reason: str


ImageReader = Callable[[ImageMetadata], "ImageRecord | Declined"]


def number(value: Any, cast: type[int] | type[float]) -> Any:
    """``value`` as an int or a float, or None when it is missing or not a number (big
    seeds stay exact: text is never read through float for an int)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if cast is int:
            if isinstance(value, float):
                return int(value) if value.is_integer() else None
            return int(str(value).strip())
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


_HEX = re.compile(r"^[0-9a-fA-F]+$")
_WIDTH_FORM = {8: "autov1", 10: "autov2", 64: "sha256"}


def hash_entry(value: Any, widths: dict[int, str] | None = None) -> dict[str, str]:
    """``{form: hex}`` for a hash as an image gives it, the form told by its width: 8 hex
    AutoV1, 10 AutoV2, 64 SHA-256, plus the writer's own ``widths`` (A1111 ``Lora hashes``:
    ``{12: "autov3"}``); a ``blake3:``/``sha256:`` prefix names the form; anything that is
    not hex, or of no known width, gives ``{}``."""
    text = str(value or "").strip().lower()
    algo, sep, rest = text.partition(":")
    if sep and algo in ("blake3", "sha256"):
        return {algo: rest} if _HEX.match(rest) and len(rest) == 64 else {}
    form = ({**_WIDTH_FORM, **(widths or {})}).get(len(text))
    return {form: text} if form and _HEX.match(text) else {}
