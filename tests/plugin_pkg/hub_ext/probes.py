"""A probe for the files of a made-up tool: a safetensors file whose metadata says
``ext_format = marker`` is a VAE for sdxl."""

from __future__ import annotations

import hub
from hub.core.taxonomy import Base, Kind
from hub.plugins.probing import Subject, Verdict


def ext_marker(subject: Subject) -> Verdict:
    if subject.metadata.get("ext_format") == "marker":
        return Verdict("ext_marker", True, "ext_format says marker", Kind.VAE, Base.SDXL, score=500)
    return Verdict("ext_marker", False, "no ext_format marker")


@hub.hookimpl
def register_probes(register):
    register("ext_marker", ext_marker)
