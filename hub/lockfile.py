"""``hub.lock``: the exact files a team's stacks use, and ``hub sync`` that makes a registry
hold them.

A lockfile lists, for every stack of hub.toml (and with ``--all`` every artifact), each file's
kind, base, family, SHA-256, size and every source it can come from (the share site's ids,
Hugging Face repo@revision/path, the URL, the team servers of hub.toml), sorted so that a
diff reads line by line. Sync installs what is missing from the first source that still
serves those bytes (a source publishing another SHA-256 is refused before any byte is
fetched; one that publishes none is checked after), leaves what is already right untouched,
and reports what the registry holds beyond the lock. Every install is atomic and resumable,
so an interrupted sync completes when run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import AmbiguousRefError, ConfigError, HubError, RefNotFoundError
from hub.core.files import read_json
from hub.core.managed_block import write_atomically
from hub.core.taxonomy import Ref
from hub.merge import WeightedRef
from hub.registry.queries import list_artifacts, resolve_json, rows_by_hash_form

LOCK_NAME = "hub.lock"
LOCK_VERSION = 1
STACK_PARTS = (  # (hub.toml key, kind, whether it holds a list of weighted refs)
    ("model", "checkpoint", False),
    ("vae", "vae", False),
    ("loras", "lora", True),
    ("hypernetworks", "hypernetwork", True),
    ("embeddings", "embedding", True),
)


def default_path(ctx: Context) -> Path:
    """hub.lock beside hub.toml (the current folder without one)."""
    config = ctx.settings.config_path
    return (config.parent if config else Path.cwd()) / LOCK_NAME


def _stack_refs(stack: dict[str, Any]) -> list[tuple[str, str]]:
    refs = []
    for key, kind, weighted in STACK_PARTS:
        value = stack.get(key)
        values = (value or []) if weighted else ([value] if value else [])
        for text in values:
            refs.append((WeightedRef.parse(str(text)).ref if kind != "embedding" else text, kind))
    return refs


def sources_of(ctx: Context, art: dict[str, Any]) -> list[dict[str, Any]]:
    """Every place the artifact's bytes can come from, each with the ref that installs it."""
    ref = art["source"]
    site = ref.get("site") or ref.get("name")
    found: list[dict[str, Any]] = []
    if ref.get("version_id") and ref.get("model_id") and site:
        prefix = "" if site == "civitai" else f"{site}:"
        found.append(
            {
                "site": site,
                "model_id": ref["model_id"],
                "version_id": ref["version_id"],
                "file_id": ref.get("file_id"),
                "ref": f"{prefix}civitai:{ref['model_id']}@{ref['version_id']}",
            }
        )
    if ref.get("repo"):
        path = f"/{ref['path']}" if ref.get("path") else ""
        revision = f"@{ref['revision']}" if ref.get("revision") else ""
        found.append(
            {
                "site": "huggingface",
                "repo": ref["repo"],
                "path": ref.get("path"),
                "revision": ref.get("revision"),
                "ref": f"hf:{ref['repo']}{path}{revision}",
            }
        )
    if ref.get("url") and site == "url":
        found.append({"site": "url", "url": ref["url"], "ref": ref["url"]})
    sha = art["hashes"]["sha256"]
    for team in ctx.settings.named_sources:
        found.append({"site": team.name, "url": team.url, "ref": f"{team.name}:sha256:{sha}"})
    unique = {json.dumps(s, sort_keys=True): s for s in found}
    return [unique[k] for k in sorted(unique)]


def _entry(ctx: Context, art: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": art["kind"],
        "name": art["name"],
        "base": art["base"],
        "family": art["family"],
        "sha256": art["hashes"]["sha256"],
        "size": art["size"],
        "sources": sources_of(ctx, art),
    }


def build(ctx: Context, every: bool = False) -> dict[str, Any]:
    """The lock of hub.toml's stacks (and with ``every``, of every artifact)."""
    stacks_conf = ctx.settings.raw.get("stacks") or {}
    files: dict[str, dict[str, Any]] = {}
    stacks: dict[str, list[str]] = {}
    with ctx.db.reader() as reader:
        for name in sorted(stacks_conf):
            hashes = []
            for ref, kind in _stack_refs(stacks_conf[name]):
                art = resolve_json(reader, ref, kind)
                files[art["hashes"]["sha256"]] = _entry(ctx, art)
                hashes.append(art["hashes"]["sha256"])
            stacks[name] = sorted(set(hashes))
        if every:
            for art in list_artifacts(reader):
                files.setdefault(art["hashes"]["sha256"], _entry(ctx, art))
    ordered = sorted(files.values(), key=lambda f: (f["kind"], f["name"], f["sha256"]))
    return {"version": LOCK_VERSION, "stacks": stacks, "files": ordered}


def write(lock: dict[str, Any], path: Path) -> None:
    """Write the lock as sorted, indented JSON (stable: the same registry, the same bytes)."""
    write_atomically(path, json.dumps(lock, indent=2, sort_keys=True) + "\n")


def read(path: Path) -> dict[str, Any]:
    """A lockfile, checked enough to act on."""
    lock = read_json(path, "a lockfile", missing="no lockfile", hint="write one with `hub lock`")
    if not isinstance(lock, dict) or lock.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path}: not a version {LOCK_VERSION} lockfile")
    return lock


@dataclass
class SyncReport:
    """What a sync did: sha256 lists per outcome; ``refused`` and ``failed`` carry reasons."""

    ok: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _OtherBytes(HubError):
    """A source publishes (or served) a SHA-256 other than the locked one."""


def _held(ctx: Context, sha256: str) -> bool:
    with ctx.db.reader() as reader:
        rows = rows_by_hash_form(reader, "sha256", sha256)
    return any(r["hash_status"] == "ok" and r["path"] and Path(r["path"]).exists() for r in rows)


def _install_exact(ctx: Context, entry: dict[str, Any], ref: str) -> None:
    from hub import manage
    from hub.install import install

    want = entry["sha256"]

    def check(remote: Any) -> None:
        if remote.sha256 and remote.sha256.lower() != want:
            raise _OtherBytes(f"{ref} now serves {remote.sha256.lower()[:10]}, locked {want[:10]}")

    result = install(ctx, ref, on_remote=check, confirm=lambda reason: True)
    got = (result.artifact or {}).get("hashes", {}).get("sha256")
    if got != want:  # a source without a published hash served other bytes
        if result.status == "added" and result.artifact is not None:
            manage.remove(ctx, f"sha256:{got}")
        raise _OtherBytes(f"{ref} served {str(got)[:10]}, locked {want[:10]}")


def sync(
    ctx: Context,
    lock: dict[str, Any],
    on_file: Callable[[dict[str, Any]], None] | None = None,
) -> SyncReport:
    """Make the registry hold every locked file (see the module's docstring)."""
    report = SyncReport()
    locked = {f["sha256"] for f in lock.get("files", [])}
    for entry in lock.get("files", []):
        if on_file is not None:
            on_file(entry)
        if _held(ctx, entry["sha256"]):
            report.ok.append(entry["sha256"])
            continue
        reasons = []
        for source in entry.get("sources", []):
            try:
                _install_exact(ctx, entry, source["ref"])
            except _OtherBytes as exc:
                report.refused.append({"sha256": entry["sha256"], "reason": exc.message})
                reasons.append(exc.message)
                continue
            except HubError as exc:
                reasons.append(f"{source['ref']}: {exc.message}")
                continue
            report.installed.append(entry["sha256"])
            break
        else:
            report.failed.append(
                {"sha256": entry["sha256"], "reason": "; ".join(reasons) or "no source"}
            )
    with ctx.db.reader() as reader:
        report.extra = sorted(
            a["hashes"]["sha256"]
            for a in list_artifacts(reader)
            if a["hashes"]["sha256"] not in locked
        )
    return report


# -- generating with the locked versions ---------------------------------------------------


def locked_stack(ctx: Context, name: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """hub.toml's ``[stacks.NAME]`` with every ref the registry no longer resolves to its
    locked file pinned to that file (``sha256:HEX``), when hub.lock lies beside hub.toml;
    and one note per drift (None and no notes without a lockfile or such a stack). A locked
    file this machine does not hold is an error saying to run ``hub sync``."""
    stacks_conf = ctx.settings.raw.get("stacks") or {}
    path = default_path(ctx)
    if not name or name not in stacks_conf or not path.is_file():
        return None, []
    lock = read(path)
    if name not in lock.get("stacks", {}):
        return None, [f"{path.name}: stack {name} is not locked (run `hub lock`)"]
    hashes = set(lock["stacks"][name])
    files = [f for f in lock.get("files", []) if f["sha256"] in hashes]
    table = dict(stacks_conf[name])
    notes: list[str] = []
    for key, kind, weighted in STACK_PARTS:
        value = table.get(key)
        if not value:
            continue
        texts = [str(t) for t in value] if weighted else [str(value)]
        pinned = [_pinned(ctx, name, text, kind, files, notes) for text in texts]
        table[key] = pinned if weighted else pinned[0]
    return table, notes


def _pinned(
    ctx: Context, stack: str, text: str, kind: str, files: list[dict[str, Any]], notes: list[str]
) -> str:
    """``text`` (a stack's ref, weighted for LoRAs and hypernetworks) as it resolves to its
    locked file: unchanged when the registry agrees, else that file's hash."""
    weighted = WeightedRef.parse(text) if kind in ("lora", "hypernetwork") else None
    ref = weighted.ref if weighted else text
    with ctx.db.reader() as reader:
        try:
            current: dict[str, Any] | None = resolve_json(reader, ref, kind)
        except (RefNotFoundError, AmbiguousRefError):
            current = None
        if current is not None and current["hashes"]["sha256"] in {f["sha256"] for f in files}:
            return text
        wanted = (current["name"] if current else Ref.parse(ref).name or ref).lower()
        entry = next((f for f in files if f["kind"] == kind and f["name"].lower() == wanted), None)
        if entry is None:  # hub.toml changed since the lock: the registry's, as before
            notes.append(f"{LOCK_NAME}: stack {stack}: {kind} {ref} is not locked")
            return text
        sha = entry["sha256"]
        here = [r for r in rows_by_hash_form(reader, "sha256", sha) if r["path"]]
    if not here or not Path(here[0]["path"]).exists():
        raise HubError(
            f"stack {stack}: the locked {kind} {entry['name']} ({sha[:10]}) is not on this machine",
            hint="run `hub sync` to fetch the files hub.lock names",
        )
    now = current["hashes"]["sha256"][:10] if current else "ambiguous or missing"
    notes.append(
        f"{LOCK_NAME}: stack {stack}: the registry's {kind} {entry['name']} is now {now}; "
        f"generating with the locked {sha[:10]}"
    )
    pin = f"sha256:{sha}"
    return f"{pin}:{weighted.te:g}:{weighted.unet:g}" if weighted else pin
