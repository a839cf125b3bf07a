"""``hub generate --from IMAGE``: the job an image records, read by the image readers and
resolved by :func:`hub.images.resolve_resource` (the one resolver), with what the registry
lacks (to install) and what sd-hub cannot honour (listed as ignored, never dropped)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.generate import Job
from hub.images import COMFY_SAMPLERS, Resolution, SiteLookup, inspect_image, sampler_name
from hub.plugins.imaging import Resource

# The samplers ``hub generate`` runs (A1111 names); another one is ignored, the default used.
SAMPLERS = frozenset(COMFY_SAMPLERS.values()) | {"PLMS"}
NOT_SET = (None, "", False, [])
# ``--set KEY=VALUE``: the job settings an image gives, with their types.
SETTABLE = {
    "prompt": str,
    "negative": str,
    "model": str,
    "vae": str,
    "steps": int,
    "cfg": float,
    "sampler": str,
    "seed": int,
    "width": int,
    "height": int,
    "clip_skip": int,
    "guidance": float,
}


@dataclass
class Found:
    """One resource of the image and where it stands."""

    resource: Resource
    resolution: Resolution

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.resource), "resolution": asdict(self.resolution)}


@dataclass
class FromImage:
    """What ``--from`` makes of an image: the job (from the files held), the files to
    install first, the parameters it cannot honour and the readers' notes."""

    path: Path
    tool: str
    job: Job
    held: list[Found] = field(default_factory=list)
    install: list[Found] = field(default_factory=list)
    installed: list[Found] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": str(self.path),
            "tool": self.tool,
            "held": [f.as_dict() for f in self.held],
            "install": [f.as_dict() for f in self.install],
            "installed": [f.as_dict() for f in self.installed],
            "ignored": self.ignored,
            "notes": self.notes,
        }


def _named(res: Resource) -> str:
    ids = [f"{form} {value}" for form, value in res.hashes.items()]
    ids += [f"version {res.version_id}"] if res.version_id is not None else []
    return f"{res.kind} {res.name or '(unnamed)'}" + (f" ({', '.join(ids)})" if ids else "")


def _refuse(path: Path, problems: list[Found], site: SiteLookup | None) -> None:
    """One line naming every file that is neither held nor installable, and why."""
    from hub.images import SITE_FORMS

    parts = []
    for f in problems:
        how, res = f.resolution, f.resource
        if how.status == "ambiguous":
            parts.append(f"{_named(res)} is ambiguous: {', '.join(how.candidates)}")
            continue
        askable = res.version_id is not None or any(form in res.hashes for form in SITE_FORMS)
        if site is None or not askable:
            where = "the registry"
        elif site.failed:
            where = f"the registry (share site not reached: {site.failed})"
        else:
            where = "the registry or on the share site"
        parts.append(f"{_named(res)} is not in {where}")
    hint = "name the file by a ref (--set model=REF, --vae, --lora) or install it first"
    if site is None:
        hint = "without --offline the share site is asked for it; or " + hint
    raise HubError(f"{path}: cannot re-run it: " + "; ".join(parts), hint=hint)


def _weight(value: float | None, default: float) -> str:
    return repr(float(default if value is None else value))


def _job(rec: Any, held: list[Found]) -> Job:
    """The job of a record whose files are all held: prompt tags pinned to the files they
    name, other add-ons given by SHA-256 with their strengths, each file once."""
    from hub.core.infotext import find_tags

    job = Job(prompt=rec.prompt or "", negative=rec.negative or None)
    tags, _errors = find_tags(f"{rec.prompt or ''}\n{rec.negative or ''}")
    tagged = {(t.network, t.name.lower()): t.name for t in tags}
    used: set[int] = set()

    def tag_of(res: Resource) -> str | None:
        network = {"lora": "lora", "hypernetwork": "hypernet"}.get(res.kind)
        return tagged.get((network, (res.name or "").lower())) if network else None

    # files a prompt tag names first: another entry for the same file is then not added again
    for f in sorted(held, key=lambda f: tag_of(f.resource) is None):
        res, art = f.resource, f.resolution.artifact or {}
        ref = f"sha256:{art['sha256']}"
        tag = tag_of(res)
        if tag is not None:
            job.pinned[f"{res.kind}:{tag}"] = art["sha256"]
        if art["id"] in used:
            continue
        used.add(art["id"])
        if res.kind == "checkpoint":
            job.model = ref
        elif res.kind == "vae":
            job.vae = ref
        elif res.kind == "text_encoder":
            job.text_encoders.append(ref)
        elif res.kind == "tokenizer":
            job.tokenizer = ref
        elif res.kind == "embedding":
            job.embeddings.append(ref)
        elif tag is not None:
            continue  # the prompt's tag applies it
        elif res.kind == "lora":
            unet = _weight(res.strength, 1.0)
            job.loras.append(f"{ref}:{_weight(res.clip_strength, float(unet))}:{unet}")
        else:
            job.hypernetworks.append(f"{ref}:{_weight(res.strength, 1.0)}")
    for attr in ("steps", "cfg", "seed", "width", "height", "guidance"):
        setattr(job, attr, getattr(rec, attr))
    job.clip_skip = rec.clip_skip if rec.clip_skip and rec.clip_skip > 0 else None
    return job


def _sampler(rec: Any, job: Job, ignored: list[str]) -> None:
    """The record's sampler when ``hub generate`` has it; else it is listed as ignored."""
    from hub.core.infotext import split_sampler

    name = sampler_name(rec)
    if name is not None and split_sampler(name)[0] in SAMPLERS:
        job.sampler = name
    elif rec.sampler or rec.scheduler:
        given = " ".join(str(s) for s in (rec.sampler, rec.scheduler) if s)
        ignored.append(f"sampler: {given} (no equivalent here; the default is used)")


def from_image(
    ctx: Context, path: Path, ask_site: bool = True, replaced: frozenset[str] = frozenset()
) -> FromImage:
    """Read an image with every reader and resolve the files it names: by hash, version id,
    then name; with ``ask_site``, those not held are looked up on the share site. Files of
    the kinds in ``replaced`` (``checkpoint``, ``vae``: given by the user) are not needed.
    Raises a one-line error naming every file that is ambiguous or nowhere to be found."""
    found = inspect_image(ctx, path)
    rec = found.record
    if rec is None:
        why = f" ({'; '.join(found.notes)})" if found.notes else ""
        raise HubError(f"{path}: no generation metadata any reader knows{why}")
    site = SiteLookup(ctx) if ask_site else None
    if site is not None:
        site.complete(found)
    pairs = [
        Found(r, how)
        for r, how in zip(rec.resources, found.resolutions, strict=True)
        if r.kind not in replaced
    ]
    problems = [f for f in pairs if f.resolution.status in ("unknown", "ambiguous")]
    if problems:
        _refuse(path, problems, site)
    held = [f for f in pairs if f.resolution.status == "held"]
    refs: dict[str, Found] = {}
    for f in pairs:
        if f.resolution.status == "installable" and f.resolution.install:
            refs.setdefault(f.resolution.install, f)
    ignored = [f"{key}: {value}" for key, value in rec.extra.items()]
    job = _job(rec, held)
    _sampler(rec, job, ignored)
    notes = [*found.notes, *rec.notes]
    notes += [f"{f.resource.kind} {f.resolution.note}" for f in held if f.resolution.note]
    return FromImage(
        path, rec.tool, job, held, install=list(refs.values()), ignored=ignored, notes=notes
    )


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as typed values; a bad one is a one-line error."""
    values: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in SETTABLE:
            raise HubError(
                f"--set {item}: not KEY=VALUE with a known key",
                hint="keys: " + ", ".join(SETTABLE),
            )
        try:
            values[key] = SETTABLE[key](text.strip())
        except ValueError:
            kind = {int: "a whole number", float: "a number"}[SETTABLE[key]]
            raise HubError(f"--set {item}: '{text.strip()}' is not {kind}") from None
    return values


def apply_settings(job: Job, given: Job, values: dict[str, Any]) -> Job:
    """``job`` with what the user gave on top: ``given``'s set fields (its add-ons are
    added), then the ``--set`` ``values``, which win."""
    out = replace(job, loras=[*job.loras, *given.loras])
    out.embeddings = [*job.embeddings, *given.embeddings]
    out.hypernetworks = [*job.hypernetworks, *given.hypernetworks]
    for name in (*SETTABLE, "text_encoders", "tokenizer", "output", "trigger", "stack"):
        if getattr(given, name) not in NOT_SET:
            setattr(out, name, getattr(given, name))
    for key, value in values.items():
        setattr(out, key, value)
    return out
