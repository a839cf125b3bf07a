"""What an image says about how it was made (``hub inspect``): every registered reader runs
on the image's metadata, the best record wins, and each resource it names is resolved
against the registry: by hash first (each form by its own rule), then by share-site
version id, then by name (exact, then without folders and extension). Several matches are
reported as ambiguous, never guessed."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PureWindowsPath
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.taxonomy import Kind, Ref
from hub.imagemeta import read_metadata
from hub.plugins.imaging import Declined, ImageReader, ImageRecord, Resource
from hub.registry.db import Reader

_MODEL_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|sft|gguf)$", re.IGNORECASE)


@dataclass
class Resolution:
    """Where a resource stands: ``held`` (``artifact`` is the registered file),
    ``ambiguous`` (``candidates``), ``installable`` (``install`` is the ref, ``remote`` the
    file a share site offers) or ``unknown``; ``by`` says what matched."""

    status: str
    by: str | None = None
    artifact: dict[str, Any] | None = None
    candidates: list[str] = field(default_factory=list)
    note: str | None = None
    install: str | None = None  # the `hub install` ref, when the share site has the file
    remote: dict[str, Any] | None = None  # what that install would fetch


@dataclass
class Inspection:
    """One image: the winning record (None when no reader matched), every reader's answer,
    notes on skipped metadata, and one resolution per resource of the record."""

    path: str
    container: str
    record: ImageRecord | None
    answers: list[dict[str, Any]]
    notes: list[str]
    resolutions: list[Resolution] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        rec = self.record.as_dict() if self.record else None
        if rec:
            for res, how in zip(rec["resources"], self.resolutions, strict=False):
                res["resolution"] = asdict(how)
        return {
            "path": self.path,
            "container": self.container,
            "record": rec,
            "readers": self.answers,
            "notes": self.notes,
        }


def read_image(path: Path, readers: dict[str, ImageReader]) -> Inspection:
    """Run every reader on the image's metadata; the best-scoring record wins. A reader that
    raises is reported as declining with its error, so one bad plugin hides nothing."""
    meta = read_metadata(path)
    answers: list[dict[str, Any]] = []
    best: ImageRecord | None = None
    for name, reader in readers.items():
        try:
            answer = reader(meta)
        except Exception as exc:  # a third-party reader's bug must not hide the others
            answer = Declined(name, f"failed: {type(exc).__name__}: {exc}")
        if isinstance(answer, ImageRecord):
            answers.append({"reader": name, "matched": True, "tool": answer.tool})
            if best is None or answer.score > best.score:
                best = answer
        else:
            answers.append({"reader": name, "matched": False, "reason": answer.reason})
    return Inspection(str(path), meta.container, best, answers, list(meta.notes))


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "kind", "name", "path", "sha256")}


def _pick(rows: list[dict[str, Any]], by: str) -> Resolution | None:
    from hub.registry.queries import display

    unique = list({r["id"]: r for r in rows}.values())
    if len(unique) == 1:
        return Resolution("held", by, _brief(unique[0]))
    if unique:
        return Resolution("ambiguous", by, candidates=sorted(display(r) for r in unique))
    return None


def name_forms(name: str) -> list[str]:
    """The name as written, then without folders (``/`` or ``\\``) and model extension."""
    bare = _MODEL_EXT.sub("", PureWindowsPath(name).name)
    return [name] if bare == name else [name, bare]


def _rows_by_computed_hash(reader: Reader, res: Resource, form: str, value: str) -> list:
    """Rows whose ``form`` hash (AutoV3, BLAKE3: computed on demand) is ``value``, computing
    and storing it for the files of the resource's kind that lack it: first those named as
    the resource is, then the rest."""
    from hub.registry import ondemand
    from hub.registry.queries import resolve_rows, rows_by_hash_form

    if reader.db is None or form not in ondemand.FORMS:
        return []
    kinds = [res.kind] if res.kind in {k.value for k in Kind} else None
    named = [
        row["id"]
        for name in (name_forms(res.name) if res.name else [])
        for row in resolve_rows(reader, Ref(name, kind=None, name=name))
    ]
    for ids in [named, None] if named else [None]:
        if ondemand.fill(reader.db, form, ids, kinds) and (
            rows := rows_by_hash_form(reader, form, value)
        ):
            return rows
    return []


def resolve_resource(reader: Reader, res: Resource) -> Resolution:
    """The registered file a resource names: by hash (AutoV3 and BLAKE3 computed for the
    files that lack them when nothing matches), version id, then name."""
    from hub.registry.queries import resolve_rows, rows_by_hash_form, rows_by_source_version

    for form, value in res.hashes.items():
        if found := _pick(rows_by_hash_form(reader, form, value), form):
            return found
    for form, value in res.hashes.items():
        if found := _pick(_rows_by_computed_hash(reader, res, form, value), form):
            return found
    if res.version_id is not None:
        found = _pick(rows_by_source_version(reader, "civitai", res.version_id), "version id")
        if found:
            return found
    kind = Kind(res.kind) if res.kind in {k.value for k in Kind} else None
    for form in name_forms(res.name) if res.name else []:
        if found := _pick(resolve_rows(reader, Ref(form, kind=kind, name=form)), "name"):
            if res.hashes and found.status == "held":
                given = ", ".join(f"{k} {v}" for k, v in res.hashes.items())
                found.note = f"the image gives {given}; the registered file's hash differs"
            return found
    return Resolution("unknown")


# Hash forms a share site is asked by (Civitai's by-hash matches these widths exactly).
SITE_FORMS = ("sha256", "autov3", "autov2")
CIVITAI_DOWNLOAD = "https://civitai.com/api/download/models/"  # + a version id


class SiteLookup:
    """Asks the share sites, by hash or Civitai version id, for the files an image names and
    the registry lacks. After the first failure to reach a site it stops asking (one note
    says why)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.failed: str | None = None

    def complete(self, found: Inspection) -> None:
        """Turn each ``unknown`` resolution that a site can serve into ``installable`` (and
        the prompt tags those files go by: :func:`link_tags`)."""
        self._ask(found)
        link_tags(found)

    def _ask(self, found: Inspection) -> None:
        from hub.core.download import RemoteNotFoundError
        from hub.install import pick_source
        from hub.plugins.sourcing import Choice

        pairs = zip(found.record.resources if found.record else [], found.resolutions, strict=True)
        for res, how in pairs:
            if how.status != "unknown":
                continue
            asks = [(f"{f}:{res.hashes[f]}", f) for f in SITE_FORMS if f in res.hashes]
            if res.version_id is not None:  # Civitai's download URL of a version
                asks.append((f"{CIVITAI_DOWNLOAD}{res.version_id}", "version id"))
            for ref, by in asks:
                if self.failed:
                    return
                try:
                    source, source_ref = pick_source(self.ctx, ref)
                    remote = source.resolve(source_ref, Choice())
                except RemoteNotFoundError:
                    continue
                except HubError as exc:
                    self.failed = exc.message
                    found.notes.append(f"share site not asked further: {exc.message}")
                    return
                if by == "version id":
                    ref = f"civitai:{remote.ids['model_id']}@{remote.ids['version_id']}"
                how.status, how.by, how.install, how.remote = "installable", by, ref, remote.plan()
                break


def inspect_image(ctx: Context, path: Path) -> Inspection:
    """Read an image and resolve every resource it names against the registry."""
    found = read_image(path, ctx.image_readers)
    if found.record and found.record.resources:
        with ctx.db.reader() as reader:
            found.resolutions = [resolve_resource(reader, r) for r in found.record.resources]
        link_tags(found)
    return found


def _file_names(how: Resolution) -> set[str]:
    """The names a resolved file goes by: its registered name and file stem, or the name and
    file stem the share site gives."""
    if how.artifact is not None:
        names = {how.artifact["name"], Path(how.artifact["path"]).stem}
    elif how.remote is not None:
        names = {str(how.remote.get("name") or ""), Path(str(how.remote.get("file") or "")).stem}
    else:
        return set()
    return {n.lower() for n in names if n}


def link_tags(found: Inspection) -> None:
    """A ``<lora:NAME>`` prompt tag with no hash that names no registered file is the add-on
    of a ``Civitai resources`` entry (found by version id: held or installable) whose file
    goes by NAME; when no file does, and exactly one such tag and one such entry are left,
    they are one add-on. The tag then resolves to that file, with a note."""
    if found.record is None:
        return
    pairs = list(zip(found.record.resources, found.resolutions, strict=True))
    tags = [
        (i, r)
        for i, (r, how) in enumerate(pairs)
        if "prompt tag" in r.origin.split(", ") and not r.hashes and how.status == "unknown"
    ]
    claimed = {  # files other resources of the image already resolve to
        how.artifact["id"] for r, how in pairs if r.version_id is None and how.artifact
    }
    entries = [
        (r, how)
        for r, how in pairs
        if r.version_id is not None
        and how.status in ("held", "installable")
        and not (how.artifact and how.artifact["id"] in claimed)
    ]
    for i, tag in list(tags):
        named = [
            e
            for e in entries
            if e[0].kind == tag.kind and tag.name and tag.name.lower() in _file_names(e[1])
        ]
        if len(named) == 1:
            _link(found, i, tag, *named[0])
            tags.remove((i, tag))
            entries.remove(named[0])
    if len(tags) == 1 and len(entries) == 1 and entries[0][0].kind == tags[0][1].kind:
        _link(found, *tags[0], *entries[0])


def _link(found: Inspection, i: int, tag: Resource, entry: Resource, how: Resolution) -> None:
    found.resolutions[i] = replace(
        how,
        by=f"{how.by} (Civitai resources)",
        note=f"<{tag.kind}:{tag.name}> is version {entry.version_id} of Civitai resources",
    )


# ComfyUI (and Fooocus) sampler and scheduler names -> A1111's, which `hub generate` takes.
COMFY_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
}
COMFY_SCHEDULES = {
    "normal": None,
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "beta": "Beta",
}
# InvokeAI's scheduler names (its SCHEDULER_MAP; ``_k``: Karras sigmas) -> A1111's.
INVOKEAI_SCHEDULERS = {
    "ddim": "DDIM",
    "lms": "LMS",
    "lms_k": "LMS Karras",
    "pndm": "PLMS",
    "heun": "Heun",
    "heun_k": "Heun Karras",
    "euler": "Euler",
    "euler_k": "Euler Karras",
    "euler_a": "Euler a",
    "kdpm_2": "DPM2",
    "kdpm_2_a": "DPM2 a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras",
    "unipc": "UniPC",
}
# NovelAI's sampler names -> A1111's.
NOVELAI_SAMPLERS = {
    "k_euler": "Euler",
    "k_euler_ancestral": "Euler a",
    "k_dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
}
_TOML_KEY = re.compile(r"[^A-Za-z0-9_-]+")


def _toml(value: Any) -> str:
    """A TOML value: numbers as they are, text as a basic string, lists of those."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"no TOML form for {value!r}")
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def sampler_name(rec: ImageRecord) -> str | None:
    """The record's sampler as ``hub generate`` names it (A1111), or None."""
    from hub.core.infotext import split_sampler

    if rec.reader in ("a1111", "sd-hub") and rec.sampler:  # A1111's names already
        sampler, legacy = split_sampler(rec.sampler)
        schedule = rec.scheduler or (legacy if legacy != "Automatic" else None)
        return f"{sampler} {schedule}" if schedule and schedule != "Automatic" else sampler
    if rec.reader == "invokeai":  # one name for both, in `scheduler`
        return INVOKEAI_SCHEDULERS.get(rec.scheduler or "")
    if rec.reader == "novelai":
        return NOVELAI_SAMPLERS.get(rec.sampler or "")
    sampler = COMFY_SAMPLERS.get(rec.sampler or "")
    if sampler is None or (rec.scheduler or "normal") not in COMFY_SCHEDULES:
        return None
    schedule = COMFY_SCHEDULES[rec.scheduler or "normal"]
    return f"{sampler} {schedule}" if schedule else sampler


def _weights(res: Resource) -> str:
    unet = 1.0 if res.strength is None else res.strength
    te = unet if res.clip_strength is None else res.clip_strength
    return f"{te:g}:{unet:g}"


def stack_table(found: Inspection, name: str) -> str:
    """The image's stack as a ``[stacks.NAME]`` table for hub.toml: held files by SHA-256
    ref (a comment names them), settings ``hub generate`` honours, and comments for what it
    cannot use (unknown or ambiguous files, other parameters)."""
    from hub.core.infotext import split_prompt

    rec = found.record
    if rec is None:
        raise HubError(f"{found.path}: no generation metadata to make a stack from")
    key = _TOML_KEY.sub("-", name).strip("-") or "image"
    lines = [f"# from {found.path} ({rec.tool})", f"[stacks.{key}]"]
    values: dict[str, Any] = {}
    comments: list[str] = []
    lists: dict[str, list[str]] = {"loras": [], "embeddings": [], "hypernetworks": []}
    for res, how in zip(rec.resources, found.resolutions, strict=True):
        named = f"{res.kind} {res.name or '(unnamed)'}"
        if how.status != "held" or how.artifact is None:
            extra = f": {', '.join(how.candidates)}" if how.candidates else ""
            extra += f" (hub install {how.install})" if how.install else ""
            comments.append(f"# {named}: {how.status}{extra}")
            continue
        ref = f"sha256:{how.artifact['sha256']}"
        if res.kind in ("checkpoint", "vae"):
            values["model" if res.kind == "checkpoint" else "vae"] = ref
        elif res.kind == "embedding":
            lists["embeddings"].append(ref)
        else:
            lists[f"{res.kind}s"].append(f"{ref}:{_weights(res)}")
        comments.append(f"# {named} = {how.artifact['kind']}:{how.artifact['name']}")
    try:
        prompt = split_prompt(rec.prompt or "")[0]  # its add-ons are listed above
    except ValueError:
        prompt = rec.prompt or ""
    values |= {k: v for k, v in lists.items() if v}
    values |= {"prompt": prompt, "negative": rec.negative}
    sampler = sampler_name(rec)
    if rec.sampler and sampler is None:
        comments.append(f"# sampler {rec.sampler} {rec.scheduler or ''}: no equivalent here")
    values |= {"steps": rec.steps, "cfg": rec.cfg, "sampler": sampler, "seed": rec.seed}
    skip = rec.clip_skip if rec.clip_skip and rec.clip_skip > 1 else None  # 1, 0: none
    values |= {"width": rec.width, "height": rec.height, "clip_skip": skip}
    lines += [f"{k} = {_toml(v)}" for k, v in values.items() if v not in (None, "")]
    if rec.extra:
        comments.append("# not applied: " + ", ".join(rec.extra))
    return "\n".join(lines + comments)
