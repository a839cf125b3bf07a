"""The share-site protocol. A source turns a ref into one :class:`RemoteFile` to fetch and,
when the site can, searches, looks files up by hash and lists a model's versions; it says
what it can in ``capabilities`` and raises :class:`NotSupported` for the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hub.core.errors import ExitCode, HubError

if TYPE_CHECKING:
    from hub.core.config import Settings
    from hub.core.download import Downloaded, Http


@dataclass
class Choice:
    """What the user said about which file: a pick among ambiguous matches, fp, size, and a
    file type other than the model weights (``VAE``, ``Text Encoder``...)."""

    pick: int | None = None
    fp: str | None = None
    size: str | None = None
    file_type: str | None = None


@dataclass
class RemoteFile:
    """One file a share site offers, with everything it says about it."""

    source: str
    url: str
    filename: str
    name: str
    size: int | None = None
    sha256: str | None = None
    kind: str | None = None
    version: str | None = None
    family: str | None = None  # the site's base label (SD 1.5, Pony, ...)
    base: str | None = None  # that label mapped to an sd-hub base
    variant: str | None = None
    trained_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)
    site_json: dict[str, Any] | None = None
    preview_url: str | None = None
    pickle: bool = False
    # a folder (a diffusers repo): (relative path, url, size, sha256) per file
    files: list[tuple[str, str, int | None, str | None]] = field(default_factory=list)
    named_by_url: bool = False  # filename is a guess from the URL: the server's name wins
    size_slack: int = 0  # how far the real size may be from ``size`` (a rounded listing)
    unverified: str | None = None  # why the bytes cannot be checked (no published hash)

    def plan(self) -> dict[str, Any]:
        """What would be fetched and from where (``--dry-run``)."""
        from hub.core.download import redact

        return {
            "source": self.source,
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "file": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "unverified": self.unverified,
            "url": redact(self.url),
            "base": self.base,
            "family": self.family,
            "pickle": self.pickle,
        }


RESOLVE, SEARCH, BY_HASH, VERSIONS, DOWNLOAD = (
    "resolve",
    "search",
    "by-hash",
    "versions",
    "download",
)
CAPABILITIES = (RESOLVE, SEARCH, BY_HASH, VERSIONS, DOWNLOAD)


@dataclass(frozen=True)
class SearchPage:
    """One page of a site's search: ``items`` are summaries with the keys ``ref`` (what
    ``hub install`` takes), ``name``, ``type`` (the site's label), ``kind``, ``base``,
    ``family``, ``version``, ``tags``, ``creator``, ``downloads`` (None when unknown);
    ``next_cursor`` asks for the next page, or None."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None


@dataclass(frozen=True)
class RemoteVersion:
    """One published version of a model, newest first in :meth:`Source.versions`."""

    id: Any  # the site's version id, as installs store it in ``source_ref["version_id"]``
    name: str | None
    family: str | None  # the site's base label
    ref: str  # what ``hub install`` takes for exactly this version


class NotSupported(HubError):
    """A source was asked for something it cannot do (``capabilities`` says what it can)."""

    exit_code = ExitCode.USAGE

    def __init__(self, source: str, what: str) -> None:
        super().__init__(
            f"the source '{source}' cannot {what}",
            hint="`hub plugins` lists the sources; pick another with --source NAME",
        )


class Source(Protocol):
    """A share site. ``capabilities`` names what it can do among :data:`CAPABILITIES`; a
    method it cannot do raises :class:`NotSupported` (:class:`BaseSource` does that)."""

    name: str
    http: Http
    capabilities: frozenset[str]

    def claims(self, ref: str) -> bool:
        """Whether this source handles a ref of this form (prefix, URL host)."""

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        """The file a ref names; raises :class:`AmbiguousRemoteError` to ask for ``--pick``."""

    def search(
        self,
        query: str,
        kind: str | None = None,
        base: str | None = None,
        tag: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """One page of models matching a query (and an sd-hub kind, base, site tag)."""

    def by_hash(self, sha256s: list[str]) -> dict[str, RemoteFile]:
        """What the site knows of files by SHA-256 (lower case keys; unknown ones left out)."""

    def versions(self, source_refs: list[dict[str, Any]]) -> list[list[RemoteVersion]]:
        """For each ``source_ref`` an install stored, that model's versions, newest first
        (an empty list when the site no longer has it)."""

    def download(
        self,
        remote: RemoteFile,
        part: Path,
        progress: Callable[[int], None] | None,
        autov3: bool | Callable[[bytes], bool],
    ) -> Downloaded:
        """Fetch ``remote`` into ``part`` (resuming what is there), verified against its size
        and SHA-256; raises :class:`hub.core.download.DownloadInterrupted` to be resumed."""


class BaseSource:
    """What a source that only resolves and downloads over HTTP can inherit: ``download``
    through ``self.http``, the rest :class:`NotSupported`."""

    name = "source"
    http: Http
    capabilities: frozenset[str] = frozenset({RESOLVE, DOWNLOAD})

    def search(
        self,
        query: str,
        kind: str | None = None,
        base: str | None = None,
        tag: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        raise NotSupported(self.name, "search")

    def by_hash(self, sha256s: list[str]) -> dict[str, RemoteFile]:
        raise NotSupported(self.name, "look files up by hash")

    def versions(self, source_refs: list[dict[str, Any]]) -> list[list[RemoteVersion]]:
        raise NotSupported(self.name, "list a model's versions")

    def download(
        self,
        remote: RemoteFile,
        part: Path,
        progress: Callable[[int], None] | None,
        autov3: bool | Callable[[bytes], bool],
    ) -> Downloaded:
        return self.http.download(
            remote.url,
            part,
            remote.size,
            remote.sha256,
            progress,
            slack=remote.size_slack,
            autov3=autov3,
        )


class NoSourceError(HubError):
    """No loaded source handles a ref (its plugin is missing or disabled)."""

    exit_code = ExitCode.NOT_FOUND


def load_sources(settings: Settings) -> dict[str, Source]:
    """Every share site the loaded plugins provide: the registered sources, then those
    hub.toml configures (``[sources.NAME]``) through the ``configured_sources`` hook."""
    from hub import plugins

    pm = plugins.load_plugins()
    found: dict[str, Source] = {
        name: reg.value(settings) for name, reg in plugins.collect("register_sources").items()
    }
    for batch in pm.hook.configured_sources(settings=settings):
        for source in batch:
            if source.name in found:
                raise HubError(
                    f"[sources.{source.name}] clashes with the source plugin '{source.name}'",
                    hint="rename the site in hub.toml",
                )
            found[source.name] = source
    return found


def pick_source(sources: dict[str, Source], ref: str) -> tuple[Source, str]:
    """The source for a ref and the ref as that source reads it. ``NAME:REF`` goes to the
    source NAME (with the whole ref when it claims that and not ``REF``); another ref to the
    first that claims it: third-party and configured sources, then ``civitai``, then
    ``url``. Raises :class:`NoSourceError` when none does."""
    head, sep, rest = ref.partition(":")
    named = sources.get(head) if sep and not ref.startswith(("http://", "https://")) else None
    if named is not None:
        return named, ref if named.claims(ref) and not named.claims(rest) else rest
    last = ("civitai", "url")
    order = [n for n in sources if n not in last] + [n for n in last if n in sources]
    for name in order:
        if sources[name].claims(ref):
            return sources[name], ref
    raise NoSourceError(
        f"no source handles '{ref}' (loaded: {', '.join(sorted(sources)) or 'none'})",
        hint="a disabled plugin ([plugins] disabled in hub.toml) provides no source; "
        "refs: kind:name, civitai:ID, hf:OWNER/REPO/FILE, an https URL, or SOURCE:REF",
    )


class AmbiguousRemoteError(HubError):
    exit_code = ExitCode.NOT_FOUND

    def __init__(self, ref: str, choices: list[str]) -> None:
        listing = "; ".join(f"{i}. {c}" for i, c in enumerate(choices[:10], 1))
        super().__init__(
            f"'{ref}' matches {len(choices)} models: {listing}",
            hint="run again with --pick N, or use civitai:MODEL_ID",
        )
        self.choices = choices
