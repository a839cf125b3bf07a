"""The vocabulary of sd-hub: kinds, bases, formats, algorithms, and refs to artifacts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from hub.core.errors import HubError


class Kind(StrEnum):
    CHECKPOINT = "checkpoint"
    LORA = "lora"
    EMBEDDING = "embedding"
    HYPERNETWORK = "hypernetwork"
    VAE = "vae"
    TEXT_ENCODER = "text_encoder"  # CLIP-L/G or T5 kept apart from the model (Flux, SD3)
    TOKENIZER = "tokenizer"  # a transformers tokenizer folder (Flux's and SD3's T5 one)
    UNKNOWN = "unknown"


# Add-ons: what web UIs name by AutoV3 (``Lora hashes``) and share sites look up by it.
ADDON_KINDS = frozenset({Kind.LORA, Kind.EMBEDDING, Kind.HYPERNETWORK})

KIND_ALIASES = {
    "dreambooth": Kind.CHECKPOINT,
    "lycoris": Kind.LORA,
    "lyco": Kind.LORA,
    "textual_inversion": Kind.EMBEDDING,
    "ti": Kind.EMBEDDING,
    "hypernet": Kind.HYPERNETWORK,
    "model": Kind.CHECKPOINT,
}


class Base(StrEnum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl-refiner"
    SD3 = "sd3"
    FLUX = "flux"
    UNKNOWN = "unknown"


# A tokenizer folder: its config beside the vocabulary of a fast (tokenizer.json) or a
# SentencePiece (spiece.model) tokenizer, as ComfyUI's comfy/t5_tokenizer and diffusers'
# tokenizer_2 folders hold it.
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABS = ("tokenizer.json", "spiece.model")


def is_tokenizer_folder(names: set[str] | frozenset[str]) -> bool:
    """Whether a folder holding these file names is a tokenizer."""
    return TOKENIZER_CONFIG in names and any(v in names for v in TOKENIZER_VOCABS)


class Format(StrEnum):
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"
    DIFFUSERS = "diffusers"
    TOKENIZER = "tokenizer"  # a folder saved by transformers: tokenizer_config.json and more
    UNKNOWN = "unknown"


# Folder names A1111 uses for each kind: the store uses them so a web UI can read it directly.
A1111_FOLDERS: dict[Kind, str] = {
    Kind.CHECKPOINT: "Stable-diffusion",
    Kind.LORA: "Lora",
    Kind.EMBEDDING: "embeddings",
    Kind.HYPERNETWORK: "hypernetworks",
    Kind.VAE: "VAE",
    Kind.TEXT_ENCODER: "text_encoder",  # Forge's models/text_encoder
    Kind.TOKENIZER: "tokenizer",
    Kind.UNKNOWN: "Other",
}


def parse_kind(text: str) -> Kind:
    """A kind name or alias (``dreambooth`` -> checkpoint), case-insensitive."""
    key = text.strip().lower()
    if key in KIND_ALIASES:
        return KIND_ALIASES[key]
    try:
        return Kind(key)
    except ValueError:
        names = ", ".join(k.value for k in Kind if k is not Kind.UNKNOWN)
        raise HubError(f"unknown kind '{text}'", hint=f"kinds: {names}") from None


def parse_base(text: str) -> Base:
    """A base name, case-insensitive; ``sd15``/``sd1.5``/``xl`` style spellings accepted."""
    key = text.strip().lower().replace("_", "-").replace(".", "")
    key = {
        "sd15": "sd1",
        "sd14": "sd1",
        "sd21": "sd2",
        "sd20": "sd2",
        "xl": "sdxl",
        "refiner": "sdxl-refiner",
    }.get(key, key)
    try:
        return Base(key)
    except ValueError:
        names = ", ".join(b.value for b in Base)
        raise HubError(f"unknown base '{text}'", hint=f"bases: {names}") from None


_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


@dataclass(frozen=True)
class Ref:
    """A reference to a local artifact: ``kind:name[@version]``, a bare name, or a hash prefix."""

    text: str
    kind: Kind | None = None
    name: str | None = None
    version: str | None = None
    hash_prefix: str | None = None
    scheme: str | None = None  # the hash named by a ``sha256:``/``autov3:``/... prefix

    @classmethod
    def parse(cls, text: str) -> Ref:
        raw = text.strip()
        if not raw:
            raise HubError("empty ref", hint="name an artifact as kind:name, name or a hash")
        body = raw
        kind = None
        head, sep, rest = raw.partition(":")
        if sep and head.lower() in {"sha256", "xxh3", "autov2", "autov3", "hash"}:
            if not _HEX.match(rest):
                raise HubError(f"'{raw}' is not a hash of 8 to 64 hex digits")
            return cls(raw, hash_prefix=rest.lower(), scheme=head.lower())
        if sep:
            kind = parse_kind(head)
            body = rest
        name, _, version = body.partition("@")
        if kind is None and not version and _HEX.match(name):
            return cls(raw, hash_prefix=name.lower(), name=name)
        return cls(raw, kind=kind, name=name or None, version=version or None)
