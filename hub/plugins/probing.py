"""The probe protocol: what a probe sees (:class:`Subject`) and answers (:class:`Verdict`).

Every registered probe runs on every file and records why it matched or declined. A probe
distinguishes "not my kind" (``matched=False``) from "my kind but broken" (``broken=True``,
which makes the file invalid).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidFileError
from hub.core.formats import Container, read_header, sniff
from hub.core.taxonomy import Base, Format, Kind, is_tokenizer_folder


@dataclass(frozen=True)
class Subject:
    """A file or folder to identify, with everything probes may look at (no tensor data)."""

    path: Path
    format: Format
    keys: dict[str, tuple[int, ...]] = field(default_factory=dict)  # tensor name -> shape
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__
    folder: dict[str, Any] | None = None  # diffusers folder: model_index.json and configs
    fields: dict[str, Any] = field(default_factory=dict)  # a pickle's plain top-level data


@dataclass(frozen=True)
class Verdict:
    """One probe's answer: a candidate identification, or a decline, with the reason."""

    probe: str
    matched: bool
    reason: str
    kind: Kind = Kind.UNKNOWN
    base: Base = Base.UNKNOWN
    layout: str | None = None
    algo: str | None = None
    variant: str | None = None
    prediction: str | None = None
    score: int = 0
    broken: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Every field (all plain values: a shallow copy), kind and base as strings."""
        out = dict(self.__dict__)  # the fields (frozen, no slots: nothing else is stored)
        for key in ("kind", "base"):
            out[key] = None if out[key] is None else str(out[key])
        return out


Probe = Callable[[Subject], Verdict]


@dataclass(frozen=True)
class Identification:
    """The winning verdict and every probe's answer."""

    best: Verdict
    format: Format | str  # a str: a plugin's own format (a converter wrote it)
    verdicts: list[Verdict] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # the safetensors __metadata__

    def why(self) -> list[dict[str, Any]]:
        return [v.as_dict() for v in self.verdicts]


def _read_folder(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for name in (
        "model_index.json",
        "unet/config.json",
        "transformer/config.json",
        "vae/config.json",
        "config.json",
        "tokenizer_config.json",
    ):
        file = path / name
        if file.is_file():
            try:
                info[name] = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InvalidFileError(file, f"unreadable JSON ({exc})") from None
    return info


def make_subject(path: Path) -> Subject:
    """Read what probes need from a path; refuse what is not a readable model file."""
    if path.is_dir():
        if is_tokenizer_folder({p.name for p in path.iterdir()}):
            return Subject(path, Format.TOKENIZER, folder=_read_folder(path))
        if not (path / "model_index.json").is_file():
            raise InvalidFileError(
                path, "a folder without model_index.json (not a diffusers model)"
            )
        return Subject(path, Format.DIFFUSERS, folder=_read_folder(path))
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise InvalidFileError(path, "no such file") from None
    except OSError as exc:
        raise InvalidFileError(path, f"cannot read: {exc.strerror or exc}") from None
    container = sniff(head, size)
    if container in (Container.PICKLE, Container.TORCH_ZIP, Container.LEGACY_TAR):
        from hub.core import safeload

        with safeload.load(path) as loaded:
            keys = {k: r.shape for k, r in loaded.tensor_refs().items()}
            return Subject(path, Format.PICKLE, keys=keys, fields=loaded.plain_fields())
    header = read_header(path)
    keys = {k: v.shape for k, v in header.tensors.items()}
    return Subject(path, Format.SAFETENSORS, keys=keys, metadata=header.metadata)


def identify(subject: Subject, probes: dict[str, Probe]) -> Identification:
    """Run every probe; the highest-scoring match wins; a broken match invalidates the file."""
    verdicts = []
    for name, probe in probes.items():
        verdict = probe(subject)
        verdicts.append(
            verdict if verdict.probe == name else Verdict(**{**verdict.__dict__, "probe": name})
        )
    matched = sorted((v for v in verdicts if v.matched), key=lambda v: -v.score)
    if matched and matched[0].broken:
        raise InvalidFileError(subject.path, matched[0].reason)
    best = (
        matched[0]
        if matched
        else Verdict(
            "none",
            False,
            "no probe recognised it: " + "; ".join(f"{v.probe}: {v.reason}" for v in verdicts),
            kind=Kind.UNKNOWN,
        )
    )
    return Identification(best, subject.format, verdicts, subject.metadata)
