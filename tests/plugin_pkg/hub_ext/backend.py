"""An inference backend that answers ``load_pipeline`` first: it wraps the built-in
diffusers backend and marks that it was used."""

from __future__ import annotations

import hub

from hub_ext import mark


@hub.hookimpl(tryfirst=True)
def load_pipeline(artifact, device, dtype):
    from hub.plugins.builtin import diffusers_backend

    model = diffusers_backend.load_pipeline(artifact=artifact, device=device, dtype=dtype)
    if model is not None:
        mark("backend", model=artifact["name"], device=device, dtype=dtype)
    return model
