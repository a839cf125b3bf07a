"""``hub generate``: resolve a stack (a model plus add-ons) from the registry, check that every
add-on fits before anything loads, generate through the ``load_pipeline`` backend, and write
a PNG whose infotext and sd-hub record say exactly how it was made.

:class:`Hub` keeps the loaded model between generations and re-patches only the weights whose
add-ons changed.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from hub import __version__
from hub.context import Context
from hub.core import addons, infotext
from hub.core.errors import ConfigError, HubError, RefNotFoundError
from hub.core.state_dicts import read_state_dict
from hub.families import family_warnings
from hub.merge import WeightedRef
from hub.plugins.generating import Extras, LoadedModel, Request
from hub.registry.queries import here, list_artifacts, resolve_json

DEFAULT_SIZE = {"sd1": 512, "sd2": 768, "sdxl": 1024, "flux": 1024, "sd3": 1024}
DIT_BASES = ("flux", "sd3")  # diffusion transformers: parts, flow-matching Euler
# Flux.1 (diffusers' FluxPipeline defaults): steps by variant, distilled guidance for dev
FLUX_STEPS = {"dev": 28, "schnell": 4}
FLUX_GUIDANCE = 3.5
SD3_STEPS, SD3_CFG = 28, 7.0  # StableDiffusion3Pipeline's defaults
RECORD_KEY = "sd-hub"  # the PNG text chunk holding sd-hub's stack record
ADDON_CACHE_BYTES = 1 << 30  # parsed add-ons a Hub keeps between generations
VAE_CACHE_BYTES = 512 << 20  # VAE weights a Hub keeps between generations
PNG_COMPRESS_LEVEL = 4  # zlib level: same pixels, about 1% larger than 6 and twice as fast

Parser = Callable[[dict[str, Any]], Any]


def _parse(art: dict[str, Any], parse: Parser) -> Any:
    return parse(art)


@dataclass
class Job:
    """One generation as a user asks for it. Unset settings come from the stack, then from
    the defaults. ``pinned`` maps ``kind:name`` of prompt tags to a hash to resolve by."""

    prompt: str = ""
    negative: str | None = None
    model: str | None = None
    loras: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    hypernetworks: list[str] = field(default_factory=list)
    vae: str | None = None
    text_encoders: list[str] = field(default_factory=list)  # Flux: CLIP-L and T5 parts
    tokenizer: str | None = None  # Flux: the T5 tokenizer part
    guidance: float | None = None  # Flux dev: distilled CFG scale
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None
    trigger: bool = False
    stack: str | None = None
    pinned: dict[str, str] = field(default_factory=dict)
    output: Path | None = None
    allow_family: bool = False  # no warning for an add-on of another family

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job from a batch file entry or a hub.toml stack (unknown keys are refused)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown job setting '{unknown[0]}'", hint="settings: " + ", ".join(sorted(names))
            )
        data = dict(data)
        for key in ("loras", "embeddings", "hypernetworks", "text_encoders"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
        if data.get("output"):
            data["output"] = Path(data["output"])
        return cls(**data)


@dataclass
class Addon:
    """A resolved add-on: its registry JSON, strengths and how the user named it."""

    art: dict[str, Any]
    te: float = 1.0
    unet: float = 1.0
    written: str = ""  # the name as written in a prompt tag; "" when given as a flag


@dataclass
class Plan:
    """A job resolved against the registry and checked, ready to run."""

    model: dict[str, Any]
    loras: list[Addon]
    embeddings: list[Addon]
    hypernetworks: list[Addon]
    vae: dict[str, Any] | None
    request: Request
    prompt_written: str
    fits: list[Any]  # adapters.patch.Report per LoRA, in order
    output: Path | None
    warnings: list[str] = field(default_factory=list)  # hub.lock drifts, family mismatches
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Flux parts by slot

    @property
    def reports(self) -> list[str]:
        return [r.summary() for r in self.fits] + [f"warning: {w}" for w in self.warnings]


@dataclass
class Generated:
    """What one generation produced."""

    path: Path
    image: Any
    infotext: str
    record: dict[str, Any]
    reports: list[str]
    reloaded: bool
    timings: dict[str, float]


def _check_dtype(dtype: str) -> None:
    if dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise HubError(f"unknown dtype '{dtype}'", hint="use float32, float16 or bfloat16")


def choose_device(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """``auto``: cuda, then mps, then cpu; float16 on a GPU, float32 on the CPU."""
    import torch

    _check_dtype(dtype)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "float16"
    return device, dtype


def with_stack(job: Job, settings_raw: dict[str, Any]) -> Job:
    """The job with a ``[stacks.NAME]`` table of hub.toml filled in under it: the job's own
    values win, add-on lists and prompt parts are joined."""
    if not job.stack:
        return job
    stacks = settings_raw.get("stacks") or {}
    if job.stack not in stacks:
        raise ConfigError(
            f"no stack '{job.stack}' in hub.toml",
            hint="stacks: " + (", ".join(sorted(stacks)) or "none defined; add [stacks.NAME]"),
        )
    stack = Job.from_dict({k: v for k, v in stacks[job.stack].items()})
    merged = replace(stack)
    for f in fields(Job):
        mine = getattr(job, f.name)
        if f.name in ("loras", "embeddings", "hypernetworks"):
            setattr(merged, f.name, [*getattr(stack, f.name), *mine])
        elif f.name == "prompt":
            merged.prompt = ", ".join(p for p in (job.prompt, stack.prompt) if p)
        elif f.name == "negative":
            merged.negative = ", ".join(p for p in (job.negative, stack.negative) if p) or None
        elif mine not in (None, False, {}, []):
            setattr(merged, f.name, mine)
    merged.stack = job.stack
    return merged


def _resolve(ctx: Context, ref: str, kind: str, origin: str) -> dict[str, Any]:
    with ctx.db.reader() as reader:
        try:
            art = resolve_json(reader, ref, kind)
        except RefNotFoundError:
            raise RefNotFoundError(
                f"no {kind} '{ref}' in the registry ({origin})",
                hint=f"see `hub list --kind {kind}`, or install it: hub install {kind}:{ref}",
            ) from None
    if art["kind"] != kind:
        raise HubError(f"{ref} is a {art['kind']}, not a {kind} ({origin})")
    return here(art)


def _pinned_ref(job: Job, kind: str, name: str) -> str:
    pin = job.pinned.get(f"{kind}:{name}")
    return f"hash:{pin}" if pin else name


def _embeddings_in(ctx: Context, text: str, base: str) -> list[dict[str, Any]]:
    """Registered embeddings of ``base`` whose name appears as a word in ``text``."""
    with ctx.db.reader() as reader:
        candidates = list_artifacts(reader, kind="embedding", base=base)
    return [
        a
        for a in candidates
        if re.search(rf"(?<![\w-]){re.escape(a['name'])}(?![\w-])", text, re.IGNORECASE)
    ]


def plan(
    ctx: Context,
    job: Job,
    shapes_of: Callable[[dict[str, Any]], Any] | None = None,
    parsed: Callable[[dict[str, Any], Parser], Any] = _parse,
) -> Plan:
    """Resolve and check a job against the registry; nothing is loaded. A missing add-on or
    one that does not fit raises with a one-line message naming it. ``parsed(art, parse)``
    reads an add-on (a cache may answer)."""
    from hub.core import ldm_models, state_dicts
    from hub.lockfile import locked_stack

    locked, lock_notes = locked_stack(ctx, job.stack)
    job = with_stack(job, {"stacks": {job.stack: locked}} if locked else ctx.settings.raw)
    if not job.model:
        raise HubError("no model to generate with", hint="pass --model REF (or --stack NAME)")
    model = _resolve(ctx, job.model, "checkpoint", "--model")
    dit = model["base"] in DIT_BASES
    if not dit:
        ldm_models.check_base(model["base"], model["path"])
    shapes = (shapes_of or state_dicts.shapes)(model)
    prompt_text, tags = infotext.split_prompt(job.prompt)
    negative_text, negative_tags = infotext.split_prompt(job.negative or "")
    loras, hypernetworks = _networks(ctx, job, [*tags, *negative_tags])
    embeddings = [Addon(_resolve(ctx, r, "embedding", f"--embedding {r}")) for r in job.embeddings]
    for name, pin in job.pinned.items():
        if name.startswith("embedding:"):
            embeddings.append(Addon(_resolve(ctx, f"hash:{pin}", "embedding", "the image")))
    chosen = {a.art["id"] for a in embeddings}
    embeddings += [
        Addon(a)
        for a in _embeddings_in(ctx, f"{prompt_text}\n{negative_text}", model["base"])
        if a["id"] not in chosen
    ]
    vae = _resolve(ctx, job.vae, "vae", "--vae") if job.vae else None
    parts = _dit_parts(ctx, job, model, shapes) if dit else {}
    _fill_autov3(ctx, loras)
    addons_used = [*loras, *embeddings, *hypernetworks]
    fits = [addons.fit_lora(model, shapes, a.art, parsed(a.art, addons.lora)) for a in loras]
    for addon in [*embeddings, *hypernetworks]:
        addons.check_base(model, addon.art)
    for addon in embeddings:
        addons.fit_embedding(model, addon.art, parsed(addon.art, addons.embedding))
    prompt_text, written = _prompts(job, prompt_text, loras, hypernetworks)
    sampler, schedule = infotext.split_sampler(job.sampler or ("Euler" if dit else "Euler a"))
    size = DEFAULT_SIZE[model["base"]]
    flux = model["base"] == "flux"
    dev = flux and model.get("variant") != "schnell"
    steps = (FLUX_STEPS["dev" if dev else "schnell"] if flux else SD3_STEPS) if dit else 20
    request = Request(
        prompt=prompt_text,
        negative=negative_text,
        steps=job.steps or steps,
        cfg=(1.0 if flux else SD3_CFG if dit else 7.0) if job.cfg is None else job.cfg,
        sampler=sampler,
        schedule=schedule,
        seed=secrets.randbelow(2**32) if job.seed is None or job.seed < 0 else job.seed,
        width=job.width or size,
        height=job.height or size,
        clip_skip=job.clip_skip or 1,
        guidance=(FLUX_GUIDANCE if job.guidance is None else job.guidance) if dev else None,
    )
    multiple = 16 if dit else 8
    for side in (request.width, request.height):
        if side % multiple:
            raise HubError(f"image sizes are multiples of {multiple}, not {side}")
    warnings = [] if job.allow_family else family_warnings(model, [a.art for a in addons_used])
    warnings = [*lock_notes, *warnings]
    return Plan(
        model,
        loras,
        embeddings,
        hypernetworks,
        vae,
        request,
        written.strip(),
        fits,
        job.output,
        warnings,
        parts,
    )


def _dit_parts(
    ctx: Context, job: Job, model: dict[str, Any], shapes: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The text encoders, VAE and tokenizer a Flux or SD3 model takes from the registry."""
    from hub import dit_parts

    return dit_parts.resolve(
        ctx, model, shapes, job.text_encoders, job.vae, job.tokenizer, partial(_resolve, ctx)
    )


def _networks(ctx: Context, job: Job, tags: list[Any]) -> tuple[list[Addon], list[Addon]]:
    """The LoRAs and hypernetworks of a job: its prompt tags, then its options."""
    loras: list[Addon] = []
    hypernetworks: list[Addon] = []
    for tag in tags:
        kind = "lora" if tag.network == "lora" else "hypernetwork"
        art = _resolve(ctx, _pinned_ref(job, kind, tag.name), kind, f"<{tag.network}:{tag.name}>")
        (loras if kind == "lora" else hypernetworks).append(Addon(art, tag.te, tag.unet, tag.name))
    for text in job.loras:
        w = WeightedRef.parse(text)
        loras.append(Addon(_resolve(ctx, w.ref, "lora", f"--lora {text}"), w.te, w.unet))
    for text in job.hypernetworks:
        w = WeightedRef.parse(text)
        hypernetworks.append(
            Addon(_resolve(ctx, w.ref, "hypernetwork", f"--hypernetwork {text}"), w.unet, w.unet)
        )
    return loras, hypernetworks


def _prompts(
    job: Job, prompt_text: str, loras: list[Addon], hypernetworks: list[Addon]
) -> tuple[str, str]:
    """The prompt the model sees and the prompt as written in the infotext (every add-on
    tagged, trigger words added with ``job.trigger``)."""
    written = job.prompt
    for addon in loras:
        if not addon.written:
            weights = f"{addon.te:g}" if addon.te == addon.unet else f"{addon.te:g}:{addon.unet:g}"
            written += f" <lora:{addon.art['name']}:{weights}>"
    for addon in hypernetworks:
        if not addon.written:
            written += f" <hypernet:{addon.art['name']}:{addon.unet:g}>"
    if job.trigger:
        words = [w for a in [*loras, *hypernetworks] for w in a.art["trained_words"]]
        if words:
            prompt_text = ", ".join([prompt_text, *words]) if prompt_text else ", ".join(words)
            written = ", ".join([job.prompt, *words]) + written[len(job.prompt) :]
    return prompt_text, written


class ByteCache:
    """Values by key, each with a size in bytes; past ``limit`` bytes the least recently used
    go first (the newest value always stays)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, size: int, make: Callable[[], Any]) -> Any:
        """The value of ``key``, made (and kept) if it is not here."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        value = make()
        self._items[key] = (value, size)
        self.size += size
        while self.size > self.limit and len(self._items) > 1:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size -= dropped
        return value


def _fill_autov3(ctx: Context, loras: list[Addon]) -> None:
    """AutoV3 for ``Lora hashes`` of safetensors LoRAs registered without one (a kind set by
    hand, say): computed and stored now."""
    todo = [
        a.art
        for a in loras
        if a.art["hashes"]["autov3"] is None and a.art["format"] == "safetensors"
    ]
    if todo:
        from hub.registry import autov3

        filled = autov3.fill(ctx.db, ids=[art["id"] for art in todo])
        for art in todo:
            art["hashes"]["autov3"] = filled.get(art["id"])


def lora_hash(art: dict[str, Any]) -> str:
    """The 12 hex A1111 writes in ``Lora hashes``: AutoV3 for safetensors, else SHA-256."""
    return (art["hashes"]["autov3"] or art["hashes"]["sha256"])[:12]


def _dit_params(p: Plan) -> dict[str, Any]:
    """What Forge records for Flux and SD3: the distilled CFG (Flux dev) and each separate
    part's file stem as ``Module N`` (no ``VAE``/``VAE hash``)."""
    slots = ("vae", "clip", "clip_g", "t5")
    names = [p.parts[slot]["name"] for slot in slots if slot in p.parts]
    params: dict[str, Any] = {"VAE hash": None, "VAE": None}
    if p.request.guidance is not None:
        params["Distilled CFG Scale"] = f"{p.request.guidance:g}"
    return params | {f"Module {i}": name for i, name in enumerate(names, 1)}


def _infotext(p: Plan, device: str, dtype: str) -> tuple[str, dict[str, Any]]:
    r = p.request
    lora_names = {a.written or a.art["name"]: lora_hash(a.art) for a in p.loras}
    params = {
        "Steps": r.steps,
        "Sampler": r.sampler,
        "Schedule type": None if r.schedule == "Automatic" else r.schedule,
        "CFG scale": f"{r.cfg:g}",
        "Seed": r.seed,
        "Size": f"{r.width}x{r.height}",
        "Model hash": p.model["hashes"]["sha256"][:10],
        "Model": p.model["name"],
        "VAE hash": p.vae["hashes"]["sha256"][:10] if p.vae else None,
        "VAE": p.vae["name"] if p.vae else None,
        "Clip skip": r.clip_skip if r.clip_skip > 1 else None,
        "Lora hashes": infotext.format_hash_list(lora_names),
        "TI hashes": infotext.format_hash_list(
            {a.art["name"]: a.art["hashes"]["sha256"][:12] for a in p.embeddings}
        ),
        "Version": f"sd-hub {__version__}",
    }
    if p.model["base"] in DIT_BASES:
        params |= _dit_params(p)
    text = infotext.format_infotext(infotext.Infotext(p.prompt_written, r.negative, params))

    def item(a: Addon) -> dict[str, Any]:
        return {
            "name": a.art["name"],
            "kind": a.art["kind"],
            "sha256": a.art["hashes"]["sha256"],
            "xxh3_128": a.art["hashes"]["xxh3_128"],
            "te": a.te,
            "unet": a.unet,
            "tag": a.written or None,
        }

    record = {
        "version": 1,
        "prompt": p.prompt_written,
        "negative": r.negative,
        "model": item(Addon(p.model)),
        "vae": item(Addon(p.vae)) if p.vae else None,
        "loras": [item(a) for a in p.loras],
        "embeddings": [item(a) for a in p.embeddings],
        "hypernetworks": [item(a) for a in p.hypernetworks],
        "text_encoders": [
            item(Addon(p.parts[s])) for s in ("clip", "clip_g", "t5") if s in p.parts
        ],
        "tokenizer": item(Addon(p.parts["tokenizer"])) if "tokenizer" in p.parts else None,
        "settings": {
            "steps": r.steps,
            "cfg": r.cfg,
            "sampler": r.sampler,
            "schedule": r.schedule,
            "seed": r.seed,
            "width": r.width,
            "height": r.height,
            "clip_skip": r.clip_skip,
        }
        | ({"guidance": r.guidance} if r.guidance is not None else {}),
        "device": device,
        "dtype": dtype,
        "sd_hub": __version__,
    }
    return text, record


def _next_output(ctx: Context, seed: int) -> Path:
    """A new ``NNNNN-<seed>.png`` in the outputs folder, created empty and exclusively (the
    image replaces it), so processes writing into one folder never share a name."""
    folder = ctx.settings.home / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(m[1]) for f in folder.glob("*.png") if (m := re.match(r"(\d+)-", f.name))]
    number = max(taken, default=0) + 1
    while True:
        path = folder / f"{number:05d}-{seed}.png"
        try:
            path.open("xb").close()
            return path
        except FileExistsError:
            number += 1


def write_png(image: Any, path: Path, text: str, record: dict[str, Any]) -> None:
    """The image with ``parameters`` (A1111 infotext) and sd-hub's record as text chunks,
    written beside its final name and moved into place."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    info.add_text(RECORD_KEY, json.dumps(record, separators=(",", ":")))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    image.save(part, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    part.replace(path)


class Hub:
    """sd-hub's Python API for generation: ``Hub().generate(Job(...))`` or keyword
    arguments. The loaded model stays in memory between calls; a new stack re-patches only
    the weights whose add-ons changed."""

    def __init__(
        self,
        home: str | Path | None = None,
        config: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        ctx: Context | None = None,
        addon_cache_bytes: int = ADDON_CACHE_BYTES,
        vae_cache_bytes: int = VAE_CACHE_BYTES,
    ) -> None:
        self.ctx = ctx or Context.load(
            config=str(config) if config else None, home=str(home) if home else None
        )
        _check_dtype(dtype)
        self._asked = (device, dtype)  # chosen when first needed: choosing imports torch
        self._loaded: tuple[str, LoadedModel] | None = None
        self._shapes: dict[str, Any] = {}
        # parsed add-ons and VAE weights by content hash, sized by their files: a new stack
        # reuses what an earlier one parsed (and patches stay the same objects)
        self.addon_cache = ByteCache(addon_cache_bytes)
        self.vae_cache = ByteCache(vae_cache_bytes)

    @cached_property
    def _target(self) -> tuple[str, str]:
        return choose_device(*self._asked)

    @property
    def device(self) -> str:
        """The device generation runs on (``auto`` resolved)."""
        return self._target[0]

    @property
    def dtype(self) -> str:
        """The dtype weights are loaded in (``auto`` resolved)."""
        return self._target[1]

    def parsed(self, art: dict[str, Any], parse: Parser) -> Any:
        """An add-on read by ``parse`` (``addons.lora`` ...), from the cache when it is there."""
        key = (parse.__name__, art["hashes"]["xxh3_128"])
        return self.addon_cache.get(key, art["size"], lambda: parse(art))

    def _vae_state(self, art: dict[str, Any]) -> dict[str, Any]:
        key = art["hashes"]["xxh3_128"]
        return self.vae_cache.get(key, art["size"], lambda: read_state_dict(art).tensors)

    @property
    def loaded(self) -> LoadedModel | None:
        """The model held in memory, if any."""
        return self._loaded[1] if self._loaded else None

    def plan(self, job: Job) -> Plan:
        """The job resolved and checked (see :func:`plan`)."""

        def shapes_of(model: dict[str, Any]) -> Any:
            from hub.core import state_dicts

            key = model["hashes"]["xxh3_128"]
            if key not in self._shapes:
                self._shapes = {key: state_dicts.shapes(model)}
            return self._shapes[key]

        return plan(self.ctx, job, shapes_of, self.parsed)

    def _model(self, art: dict[str, Any]) -> tuple[LoadedModel, bool]:
        key = f"{art['hashes']['xxh3_128']}/{self.device}/{self.dtype}"
        if art.get("parts"):
            parts = sorted((k, a["hashes"]["xxh3_128"]) for k, a in art["parts"].items())
            key += f"/{parts}"
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], False
        self._loaded = None  # free the previous model before loading the next
        from hub import plugins

        self.ctx.load_plugins()
        model = plugins.load_plugins().hook.load_pipeline(
            artifact=art, device=self.device, dtype=self.dtype
        )
        if model is None:
            raise HubError(
                f"no inference backend loads {art['name']} ({art['format']} {art['kind']})"
            )
        self._loaded = (key, model)
        return model, True

    def generate(
        self,
        job: Job | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
        **settings: Any,
    ) -> Generated:
        """Make one image and write it (``job.output`` or the next file under
        ``HUB_HOME/outputs``)."""
        from adapters import patch

        started = time.perf_counter()
        job = job if job is not None else Job.from_dict(settings)
        p = self.plan(job)
        stage = on_stage or (lambda _text: None)
        stage(f"loading {p.model['name']}")
        model, reloaded = self._model(p.model | ({"parts": p.parts} if p.parts else {}))
        loaded_at = time.perf_counter()
        stage("applying add-ons")
        changes = patch.plan(
            [
                (fit, self.parsed(a.art, addons.lora), a.te, a.unet)
                for a, fit in zip(p.loras, p.fits, strict=True)
            ]
        )
        model.patches.update(changes)
        extras = Extras(
            embeddings=tuple(
                (a.art["name"], self.parsed(a.art, addons.embedding)) for a in p.embeddings
            ),
            hypernetworks=tuple(
                (self.parsed(a.art, addons.hypernetwork), a.unet) for a in p.hypernetworks
            ),
            vae=(p.vae["hashes"]["xxh3_128"], self._vae_state(p.vae))
            if p.vae and p.model["base"] not in DIT_BASES
            else None,
        )
        patched_at = time.perf_counter()
        first_step: list[float] = []

        def step(done: int, total: int) -> None:
            if not first_step:
                first_step.append(time.perf_counter())
            if on_step is not None:
                on_step(done, total)

        stage("denoising")
        image = model.generate(p.request, extras, step)
        text, record = _infotext(p, self.device, self.dtype)
        path = p.output or _next_output(self.ctx, p.request.seed)
        write_png(image, path, text, record)
        done = time.perf_counter()
        timings = {
            "load": loaded_at - started,
            "patch": patched_at - loaded_at,
            "to_first_step": (first_step[0] if first_step else done) - started,
            "total": done - started,
        }
        return Generated(path, image, text, record, p.reports, reloaded, timings)


def read_batch(path: Path, defaults: Job) -> list[Job]:
    """Jobs from a batch file: a JSON list, a TOML file with ``[[jobs]]``, or one prompt per
    line (``#`` comments). ``defaults`` fills what an entry leaves unset."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HubError(f"{path}: cannot read the batch file ({exc.strerror})") from None
    base = {f.name: getattr(defaults, f.name) for f in fields(Job)}
    base = {k: v for k, v in base.items() if v not in (None, [], {}, "")}
    if path.suffix in (".json", ".toml"):
        try:
            if path.suffix == ".json":
                entries = json.loads(text)
            else:
                import tomllib

                entries = tomllib.loads(text).get("jobs")
        except ValueError as exc:
            raise HubError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise HubError(f"{path}: expected a list of jobs (objects with a prompt)")
        return [Job.from_dict(base | e) for e in entries]
    lines = [line.strip() for line in text.splitlines()]
    return [replace(defaults, prompt=line) for line in lines if line and not line.startswith("#")]
