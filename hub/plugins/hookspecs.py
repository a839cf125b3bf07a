"""The hooks sd-hub calls. Plugins implement them with ``@hub.hookimpl``.

"Collect" hooks receive a ``register`` callback and call it once per thing they provide;
their return value is ignored. A name registered twice is a start-up error naming both
plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from hub.core.config import Settings
    from hub.plugins.converting import Converter
    from hub.plugins.generating import LoadedModel
    from hub.plugins.imaging import ImageReader
    from hub.plugins.probing import Probe
    from hub.plugins.sourcing import Source

hookspec = pluggy.HookspecMarker("hub")


@hookspec
def register_probes(register: Callable[[str, Probe], None]) -> None:
    """Provide identification probes: ``register(name, probe)``.

    A probe is called with a :class:`hub.plugins.probing.Subject` and returns a
    :class:`hub.plugins.probing.Verdict` (matched or declined, always with a reason). Every
    probe runs on every file; the best match wins. Returns nothing.
    """


@hookspec
def register_converters(register: Callable[[str, Converter], None]) -> None:
    """Provide format converters: ``register(name, converter)``.

    A :class:`hub.plugins.converting.Converter` declares an edge (source node, target node,
    cost) and the kinds it handles; ``hub convert`` plans the cheapest chain. Returns nothing.
    """


@hookspec
def register_sources(register: Callable[[str, Callable[[Settings], Source]], None]) -> None:
    """Provide share sites: ``register(name, factory)``; ``factory(settings)`` returns a
    :class:`hub.plugins.sourcing.Source`. ``hub install`` asks each source whether it claims
    a ref; ``kind:name`` and hash refs go to the default source. Returns nothing.
    """


@hookspec
def register_merge_methods(register: Callable[[str, Any], None]) -> None:
    """Provide checkpoint merge methods: ``register(name, method)`` with a
    :class:`hub.plugins.builtin.merge_methods.MergeMethod` (inputs, A1111 label, and a
    per-tensor function). Returns nothing.
    """


@hookspec
def register_image_readers(register: Callable[[str, ImageReader], None]) -> None:
    """Provide readers of generation metadata in images: ``register(name, reader)``.

    A reader is called with a :class:`hub.plugins.imaging.ImageMetadata` (the image's text
    chunks, decoded EXIF UserComment and XMP) and returns a
    :class:`hub.plugins.imaging.ImageRecord` (tool, prompt, settings, resources, extra
    fields) or a :class:`hub.plugins.imaging.Declined` with the reason; it never raises on
    bad input. Every reader runs on every image; the highest-scoring record wins.
    Returns nothing.
    """


@hookspec(firstresult=True)
def load_pipeline(artifact: dict[str, Any], device: str, dtype: str) -> LoadedModel | None:
    """Load a registered model (``artifact`` is its registry JSON) for generation on
    ``device`` (``cpu``, ``cuda``, ``mps``) in ``dtype`` (``float32``, ``float16``,
    ``bfloat16``).

    Return a :class:`hub.plugins.generating.LoadedModel`, or None to let the next backend
    try; the first non-None result wins. The built-in diffusers backend runs last.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands to the ``hub`` command line with ``@app.command()``. Returns nothing."""


@hookspec
def register_families(register: Callable[[str, Any], None]) -> None:
    """Provide family knowledge: ``register(name, table)`` with a
    :class:`hub.families.FamilyTable` (family labels and their base, which add-on families
    a model family accepts, checkpoint SHA-256s of base releases, metadata values that name
    a family). Tables of every plugin are merged. Returns nothing.
    """
