"""Web UIs that see the library: record an install (``hub ui add``), link the registry's
files into its own folders (``hub ui link``) and take exactly those links away again
(``hub ui unlink``), with no copy and never touching a file sd-hub did not make."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError, RefNotFoundError
from hub.core.links import MODES, LinkStat, is_same_link, make_link
from hub.plugins.ui_layouts import UiLayout
from hub.registry import uis as rows

BATCH = 256  # link records written per transaction: a kill loses at most this many records


def layouts(ctx: Context) -> dict[str, UiLayout]:
    """Every UI layout the plugins register, by type name."""
    from hub import plugins

    ctx.load_plugins()
    return {name: reg.value for name, reg in plugins.collect("register_ui_layouts").items()}


def detect_type(ctx: Context, root: Path) -> str:
    """The UI type of an install folder, from the layouts' markers."""
    found = [name for name, layout in layouts(ctx).items() if layout.detect(root)]
    if len(found) == 1:
        return found[0]
    types = ", ".join(sorted(layouts(ctx)))
    if not found:
        raise HubError(f"{root}: not recognised as a web UI install", hint=f"give --type ({types})")
    raise HubError(f"{root}: looks like several UIs ({', '.join(found)})", hint="give --type")


def add_ui(ctx: Context, path: Path, name: str | None = None, ui_type: str | None = None) -> dict:
    """Record a UI install (its type detected when not given)."""
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise HubError(f"{path}: no such folder", hint="give the UI's install folder")
    known = layouts(ctx)
    if ui_type is not None and ui_type not in known:
        raise HubError(f"unknown UI type '{ui_type}'", hint=f"types: {', '.join(sorted(known))}")
    ui_type = ui_type or detect_type(ctx, root)
    name = name or root.name
    with ctx.db.session() as session:
        if rows.find_ui(session, name) is not None:
            raise HubError(f"a UI named '{name}' is already recorded", hint="give --name")
        other = rows.find_ui_by_path(session, str(root))
        if other is not None:
            raise HubError(f"{root}: already recorded as UI '{other['name']}'")
        rows.insert_ui(session, name, ui_type, str(root))
    return get_ui(ctx, name)


def get_ui(ctx: Context, name: str) -> dict[str, Any]:
    with ctx.db.reader() as reader:
        ui = rows.find_ui(reader, name)
    if ui is None:
        raise RefNotFoundError(f"no UI named '{name}'", hint="see `hub ui list`")
    return ui


def list_uis(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.reader() as reader:
        return rows.all_uis(reader)


def _layout(ctx: Context, ui: dict[str, Any]) -> UiLayout:
    layout = layouts(ctx).get(ui["type"])
    if layout is None:
        raise HubError(
            f"UI '{ui['name']}' is of type '{ui['type']}', which no loaded plugin provides",
            hint="enable the plugin that registers it",
        )
    return layout


@dataclass
class LinkAction:
    """One thing ``hub ui link``/``unlink`` did (or would do) at one path.

    status: linked, relinked, unchanged, removed, gone, kept, clash, present, skipped, failed.
    """

    status: str
    path: str
    target: str | None = None
    artifact: str | None = None
    mode: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _Wanted:
    artifact: dict[str, Any]
    target: Path
    dest: Path


def _display(art: dict[str, Any]) -> str:
    return f"{art['kind']}:{art['name']}"


class _Linker:
    """One ``hub ui link`` run: compares what should be linked with what is, and acts."""

    def __init__(self, ctx: Context, ui: dict[str, Any], mode: str, dry_run: bool) -> None:
        self.ctx, self.ui, self.mode, self.dry_run = ctx, ui, mode, dry_run
        self.layout = _layout(ctx, ui)
        self.root = Path(ui["path"])
        self.actions: list[LinkAction] = []
        self._pending: list[Callable[[Any], None]] = []

    # -- records ----------------------------------------------------------------------------

    def _record(self, change: Callable[[Any], None]) -> None:
        self._pending.append(change)
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending and not self.dry_run:
            with self.ctx.db.session() as session:
                for change in self._pending:
                    change(session)
        self._pending.clear()

    def _save(self, wanted: _Wanted, made: LinkStat) -> None:
        values = {
            "ui_id": self.ui["id"],
            "artifact_id": wanted.artifact["id"],
            "sha256": wanted.artifact["hashes"]["sha256"],
            "link_path": str(wanted.dest),
            "target_path": str(wanted.target),
            **asdict(made),
        }
        self._record(lambda s: rows.save_link(s, values))

    def forget(self, path: str) -> None:
        self._record(lambda s: rows.forget_link(s, self.ui["id"], path))

    # -- planning ---------------------------------------------------------------------------

    def want(self, art: dict[str, Any]) -> _Wanted | None:
        """Where an artifact goes in this UI, or None (with a ``skipped`` action) if nowhere."""
        slot = self.layout.slot_for(art["kind"], art["algo"], art["format"])
        if not art["path"]:  # registered by another machine sharing the registry
            reason = "its file is not on this machine"
            self.actions.append(LinkAction("skipped", "", artifact=_display(art), reason=reason))
            return None
        target = Path(art["path"])
        folder = self.layout.folders.get(slot) if slot else None
        reason = None
        if folder is None:
            reason = f"{self.layout.label} has no folder for {art['kind']} ({art['format']})"
        elif not folder.lists(target.name):
            reason = f"{self.layout.label} does not list files named like {target.name}"
        elif not target.exists():
            reason = f"{target}: file missing (see `hub verify`)"
        if reason or folder is None:
            self.actions.append(
                LinkAction("skipped", str(target), artifact=_display(art), reason=reason)
            )
            return None
        return _Wanted(art, target, self.root / folder.path / target.name)

    # -- acting -----------------------------------------------------------------------------

    def _make(self, wanted: _Wanted, status: str) -> None:
        action = LinkAction(status, str(wanted.dest), str(wanted.target), _display(wanted.artifact))
        if self.dry_run:
            action.mode = self.mode
            self.actions.append(action)
            return
        try:
            wanted.dest.parent.mkdir(parents=True, exist_ok=True)
            made = make_link(wanted.target, wanted.dest, self.mode)
        except FileExistsError:
            self._clash(wanted, None)
            return
        except OSError as exc:  # LinkError: this mode cannot be made here
            action.status, action.reason = "failed", f"{exc.strerror or exc}"
            self.actions.append(action)
            return
        action.mode = made.mode
        self.actions.append(action)
        self._save(wanted, made)

    def _clash(self, wanted: _Wanted, holder: str | None) -> None:
        who = holder or "a file sd-hub did not make"
        self.actions.append(
            LinkAction(
                "clash",
                str(wanted.dest),
                str(wanted.target),
                _display(wanted.artifact),
                reason=f"{wanted.dest} is {who}; left as it is, {wanted.target} not linked",
            )
        )

    def remove_recorded(self, record: dict[str, Any]) -> bool:
        """Delete a recorded link if the path still is that link; forget the record."""
        ours = _remove_if_ours(record, self.dry_run)
        self.forget(record["link_path"])
        return ours

    def place(self, wanted: _Wanted, record: dict[str, Any] | None, made_now: dict) -> None:
        """Bring one wanted link about, given the record of its path (if any)."""
        dest = wanted.dest
        if str(dest) in made_now:
            self._clash(wanted, f"sd-hub's link to {made_now[str(dest)]}")
            return
        made_now[str(dest)] = wanted.target
        if record is not None:
            ours = is_same_link(dest, _stat_of(record), Path(record["target_path"]))
            same = (record["target_path"], record["artifact_id"]) == (
                str(wanted.target),
                wanted.artifact["id"],
            )
            if ours and same and self.mode in ("auto", record["mode"]):
                self.actions.append(
                    LinkAction("unchanged", str(dest), str(wanted.target), mode=record["mode"])
                )
                return
            self.remove_recorded(record)
            if ours or not os.path.lexists(dest):
                self._make(wanted, "relinked")
                return
        elif os.path.lexists(dest) and _same_file(dest, wanted.target):
            self.actions.append(
                LinkAction("present", str(dest), str(wanted.target), reason="already this file")
            )
            return
        if os.path.lexists(dest):
            self._clash(wanted, None)
            return
        self._make(wanted, "linked")


def _remove_if_ours(record: dict[str, Any], dry_run: bool = False) -> bool:
    """Delete the path of a link record if it still is that link; whether it was."""
    path = Path(record["link_path"])
    ours = is_same_link(path, _stat_of(record), Path(record["target_path"]))
    if ours and not dry_run:
        path.unlink()
    return ours


def _stat_of(record: dict[str, Any]) -> LinkStat:
    return LinkStat(
        record["mode"], record["device"], record["inode"], record["size"], record["mtime_ns"]
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True)
class Selection:
    """Which artifacts ``hub ui link`` takes: filters, or explicit ids (auto-link)."""

    kind: str | None = None
    base: str | None = None
    tags: tuple[str, ...] = ()
    ids: tuple[int, ...] | None = None

    def select(self, ctx: Context) -> list[dict[str, Any]]:
        from hub.registry.queries import COLUMNS, list_artifacts, tags_for, to_json

        with ctx.db.reader() as reader:
            if self.ids is None:
                return list_artifacts(reader, self.kind, self.base, list(self.tags))
            marks = ", ".join(f":i{n}" for n in range(len(self.ids))) or "NULL"
            found = reader.rows(
                f"SELECT {COLUMNS} FROM artifact a WHERE a.id IN ({marks})",
                {f"i{n}": i for n, i in enumerate(self.ids)},
            )
            tags = tags_for(reader, [r["id"] for r in found])
        return [to_json(r, tags.get(r["id"], [])) for r in found]


def link_ui(
    ctx: Context,
    name: str,
    selection: Selection = Selection(),
    mode: str = "auto",
    dry_run: bool = False,
) -> list[LinkAction]:
    """Link the selected artifacts into a UI's folders (see :class:`LinkAction`).

    Idempotent: links that are as they should be are left alone; a link whose artifact
    moved is remade; links of artifacts no longer registered are removed (a full run only);
    a path held by a file sd-hub did not make is reported as a clash and never replaced."""
    if mode not in MODES:
        raise HubError(f"unknown link mode '{mode}'", hint=f"modes: {', '.join(MODES)}")
    ui = get_ui(ctx, name)
    linker = _Linker(ctx, ui, mode, dry_run)
    if selection.kind and linker.layout.slot_for(selection.kind, None, "") is None:
        raise HubError(f"UI '{name}' ({linker.layout.label}) has no folder for {selection.kind}")
    with ctx.db.reader() as reader:
        records = rows.links_of(reader, ui["id"])
    by_path = {r["link_path"]: r for r in records}
    wanted = [w for w in map(linker.want, selection.select(ctx)) if w is not None]
    wanted_ids = {w.artifact["id"]: str(w.dest) for w in wanted}
    for record in records:  # an artifact now wanted elsewhere, or no longer registered
        moved = wanted_ids.get(record["artifact_id"], record["link_path"]) != record["link_path"]
        dropped = not record["registered"] and selection.ids is None
        if moved or dropped:
            ours = linker.remove_recorded(record)
            status = "removed" if ours else "kept"
            linker.actions.append(LinkAction(status, record["link_path"], record["target_path"]))
            by_path.pop(record["link_path"])
    made_now: dict[str, Path] = {}
    for w in wanted:
        linker.place(w, by_path.get(str(w.dest)), made_now)
    linker.flush()
    return linker.actions


def unlink_ui(ctx: Context, name: str, dry_run: bool = False) -> list[LinkAction]:
    """Remove every link sd-hub made in a UI, and nothing else: a path that no longer is
    that link (replaced, edited) is left and forgotten."""
    ui = get_ui(ctx, name)
    linker = _Linker(ctx, ui, "auto", dry_run)
    with ctx.db.reader() as reader:
        records = rows.links_of(reader, ui["id"])
    for record in records:
        path = record["link_path"]
        if not os.path.lexists(path):
            status, reason = "gone", "no longer there"
            linker.forget(path)
        elif linker.remove_recorded(record):
            status, reason = "removed", None
        else:
            status, reason = "kept", "changed since sd-hub linked it: left as the user's file"
        linker.actions.append(LinkAction(status, path, record["target_path"], reason=reason))
    linker.flush()
    return linker.actions


def remove_ui(ctx: Context, name: str, keep_links: bool = False) -> list[LinkAction]:
    """Forget a UI; its sd-hub links (and a ComfyUI's sd-hub yaml section) are removed
    first unless ``keep_links``."""
    ui = get_ui(ctx, name)
    actions = [] if keep_links else unlink_ui(ctx, name)
    if not keep_links and ui["type"] == "comfyui":
        from hub.ui_yaml import write_comfy_yaml

        done = write_comfy_yaml(ctx, name, remove=True)
        if done["status"] == "removed":
            actions.append(LinkAction("removed", done["path"], reason="sd-hub's section"))
    with ctx.db.session() as session:
        rows.delete_ui(session, ui["id"])
    return actions


def unlink_artifact(ctx: Context, artifact_id: int) -> list[LinkAction]:
    """Remove the links sd-hub made of one artifact in every UI (before the artifact goes);
    a path that no longer is that link is left and forgotten."""
    with ctx.db.reader() as reader:
        records = rows.links_of_artifact(reader, artifact_id)
    if not records:
        return []
    actions = [
        LinkAction("removed" if _remove_if_ours(r) else "kept", r["link_path"], r["target_path"])
        for r in records
    ]
    with ctx.db.session() as session:
        for r in records:
            rows.forget_link(session, r["ui_id"], r["link_path"])
    return actions


def auto_link_names(ctx: Context) -> list[str]:
    """The UIs hub.toml asks to link new artifacts into (``[ui.NAME] auto_link = true``)."""
    return sorted(ctx.settings.ui_auto_link)


def auto_link(ctx: Context, artifact_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Link just-registered artifacts into every auto-link UI; what happened, per UI and path.

    A UI named in hub.toml but not recorded is reported, not an error: the artifact is
    registered whatever happens here."""
    done: list[dict[str, Any]] = []
    ids = tuple(artifact_ids)
    for name in auto_link_names(ctx):
        try:
            actions = link_ui(ctx, name, Selection(ids=ids))
        except HubError as exc:
            done.append({"ui": name, "status": "failed", "reason": exc.message})
            continue
        done += [{"ui": name, **a.as_dict()} for a in actions if a.status != "skipped"]
    return done
