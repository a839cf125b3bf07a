"""The hooks sd-hub calls. Plugins implement them with ``@hub.hookimpl``.

Every hook is called through pluggy's hook caller, so an implementation may take a subset
of the arguments, and a hook wrapper (``@hub.hookimpl(wrapper=True)``, a generator that
``yield``s once and returns the result) sees every call.

Registration hooks (``register_*`` but ``register_commands``) receive a ``register(name,
value)`` callback and call it once per thing they provide; their return value is ignored.
They are collected once per process, when the plugins load, one call per providing plugin
so that each thing is attributed to its plugin; a name registered twice is a start-up error
naming both plugins (a built-in included: disable it to replace it). Built-in
implementations are marked ``trylast``. ``firstresult`` hooks ("who handles this?") stop at
the first implementation that returns something other than None.
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
    from hub.plugins.merging import MergeMethod
    from hub.plugins.probing import Probe
    from hub.plugins.sourcing import Source
    from hub.plugins.ui_layouts import UiLayout

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
    cost), the kinds it handles and what it writes (registry format, file suffix, aliases of
    the target); ``hub convert --to`` accepts every declared target and plans the cheapest
    chain. Returns nothing.
    """


@hookspec
def register_sources(register: Callable[[str, Callable[[Settings], Source]], None]) -> None:
    """Provide share sites: ``register(name, factory)``; ``factory(settings)`` returns a
    :class:`hub.plugins.sourcing.Source` (resolve, search, by-hash, versions, download; a
    source lists what it can in ``capabilities`` and raises
    :class:`hub.plugins.sourcing.NotSupported` for the rest). ``hub install NAME:REF`` goes to
    the source NAME; another ref to the source that claims it (third-party sources first,
    then ``civitai``, then ``url``). Returns nothing.
    """


@hookspec
def configured_sources(settings: Settings) -> list[Source]:
    """The share sites hub.toml configures (``[sources.NAME]`` with a url and a token) that
    this plugin can speak to: return a list of :class:`hub.plugins.sourcing.Source` (empty
    when none is yours). The built-in ``civitai`` plugin serves the Civitai-API sites, so
    disabling it disables them too.
    """


@hookspec
def register_merge_methods(register: Callable[[str, MergeMethod], None]) -> None:
    """Provide checkpoint merge methods: ``register(name, method)`` with a
    :class:`hub.plugins.merging.MergeMethod` (inputs, A1111 label, a per-tensor function and
    its declared options, passed as ``hub merge --option KEY=VALUE``). Returns nothing.
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
    ``bfloat16``). A model generated from separate parts (Flux: text encoders, VAE, T5
    tokenizer) carries them in ``artifact["parts"]``, by slot (``clip``, ``t5``, ``vae``,
    ``tokenizer``), each a registry JSON.

    Return a :class:`hub.plugins.generating.LoadedModel`, or None to let the next backend
    try; the first non-None result wins. The built-in diffusers backend runs last.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands to the ``hub`` command line with ``@app.command()`` (called when the
    command line is not one of the built-in commands). Returns nothing."""


@hookspec
def register_ui_layouts(register: Callable[[str, UiLayout], None]) -> None:
    """Provide web-UI layouts: ``register(name, layout)`` with a
    :class:`hub.plugins.ui_layouts.UiLayout` (how to recognise an install, and the folder of
    each kind). ``hub ui add`` detects a type with them; ``hub ui link`` links into their
    folders. Returns nothing.
    """


@hookspec
def register_families(register: Callable[[str, Any], None]) -> None:
    """Provide family knowledge: ``register(name, table)`` with a
    :class:`hub.plugins.families.FamilyTable` (family labels and their base, which add-on families
    a model family accepts, checkpoint SHA-256s of base releases, metadata values that name
    a family). Tables of every plugin are merged. Returns nothing.
    """
