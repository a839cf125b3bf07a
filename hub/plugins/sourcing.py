"""The share-site protocol: a source turns a ref into one :class:`RemoteFile` to fetch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hub.core.errors import ExitCode, HubError

if TYPE_CHECKING:
    from hub.core.download import Http


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


class Source(Protocol):
    name: str
    http: Http

    def claims(self, ref: str) -> bool:
        """Whether this source handles a ref of this form (prefix, URL host)."""

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        """The file a ref names; raises :class:`AmbiguousRemoteError` to ask for ``--pick``."""


class AmbiguousRemoteError(HubError):
    exit_code = ExitCode.NOT_FOUND

    def __init__(self, ref: str, choices: list[str]) -> None:
        listing = "; ".join(f"{i}. {c}" for i, c in enumerate(choices[:10], 1))
        super().__init__(
            f"'{ref}' matches {len(choices)} models: {listing}",
            hint="run again with --pick N, or use civitai:MODEL_ID",
        )
        self.choices = choices
