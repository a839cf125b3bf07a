"""The registry's schema, declared as SQLModel tables.

The migrations (``migrations/versions``) create it and the registry code reads and writes it
in SQL (``queries.py``, ``writes.py``: no ORM import on the command path, which keeps start-up
short). These classes are the declaration new migrations are generated from
(``target_metadata`` in ``migrations/env.py``); a test checks the two never drift apart."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Artifact(SQLModel, table=True):
    """One file or folder of weights, identified by its content hash."""

    __tablename__ = "artifact"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    name: str = Field(index=True)
    version: str | None = None
    base: str = Field(default="unknown", index=True)
    family: str | None = None
    format: str
    layout: str | None = None
    algo: str | None = None
    variant: str | None = None
    prediction: str | None = None
    path: str = Field(unique=True)
    in_store: bool = False
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    inode: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    xxh3_128: str = Field(unique=True)
    sha256: str = Field(index=True)
    autov1: str | None = None
    autov3: str | None = Field(default=None, index=True)
    blake3: str | None = Field(default=None, index=True)  # computed when asked (InvokeAI)
    hash_status: str = "ok"
    source: str = "local"
    source_ref: str | None = Field(
        default=None, sa_column=Column(Text)
    )  # JSON: share-site ids and URL
    trained_words: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON
    preferred_weight: float | None = None
    description: str | None = Field(default=None, sa_column=Column(Text))
    preview: str | None = None  # path of a preview image beside the file
    header_metadata: str | None = Field(
        default=None, sa_column=Column(Text)
    )  # JSON: the safetensors __metadata__
    site_json: str | None = Field(
        default=None, sa_column=Column(Text)
    )  # JSON: what the share site said
    probe_json: str | None = Field(
        default=None, sa_column=Column(Text)
    )  # JSON: every probe's verdict
    kind_locked: bool = False  # the user set the kind: identification keeps it
    base_locked: bool = False
    family_locked: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    family_evidence: str | None = Field(
        default=None, sa_column=Column(Text)
    )  # JSON: what says which family, strongest first (hub.families)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# Names are looked up and sorted case-insensitively on every engine.
Index("ix_artifact_name_lower", func.lower(Artifact.__table__.c.name))


class Tag(SQLModel, table=True):
    """A tag on an artifact; origin is user, site or header."""

    __tablename__ = "tag"
    __table_args__ = (UniqueConstraint("artifact_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("artifact.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    name: str = Field(index=True)
    origin: str = "user"


class Lineage(SQLModel, table=True):
    """An artifact made from another one (merge, conversion), with the parameters used."""

    __tablename__ = "lineage"

    id: int | None = Field(default=None, primary_key=True)
    child_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("artifact.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    parent_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("artifact.id", ondelete="SET NULL"), index=True),
    )
    parent_sha256: str | None = None
    relation: str
    params: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON


class Ui(SQLModel, table=True):
    """A web UI install (``hub ui add``) that sd-hub links models into."""

    __tablename__ = "ui"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    type: str
    path: str
    created_at: datetime = Field(default_factory=utcnow)


class UiLink(SQLModel, table=True):
    """A link sd-hub made in a UI's folder: what it points at and how to know it is still
    the one sd-hub made (the link's device and inode; a symlink's target)."""

    __tablename__ = "ui_link"
    __table_args__ = (UniqueConstraint("ui_id", "link_path"),)

    id: int | None = Field(default=None, primary_key=True)
    ui_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("ui.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    artifact_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("artifact.id", ondelete="SET NULL"), index=True),
    )
    sha256: str
    link_path: str
    mode: str  # hardlink, reflink or symlink
    target_path: str
    device: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    inode: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class SiteAnswer(SQLModel, table=True):
    """What a share site answered for one key (``sha256:HEX``, ``version:ID``, ``model:ID``,
    ``autov3:HEX``): the JSON, or a "not found" (``found`` false) re-asked after a while."""

    __tablename__ = "site_answer"
    __table_args__ = (UniqueConstraint("site", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    site: str
    key: str
    found: bool
    body: str | None = Field(default=None, sa_column=Column(Text))  # JSON
    fetched_at: datetime


class Location(SQLModel, table=True):
    """One place on disk where an artifact's bytes are: a path, what ``stat`` said of it when
    it was last seen, the scanned root (or UI) it belongs to, and whether sd-hub made it.
    ``artifact.path`` is one of them: the primary location. A path is a place on one machine
    (``machine``: several share a PostgreSQL registry), unique there."""

    __tablename__ = "location"
    __table_args__ = (UniqueConstraint("machine", "path", name="uq_location_machine_path"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("artifact.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    path: str
    machine: str = Field(default="", sa_column_kwargs={"server_default": ""})
    device: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    inode: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    root: str | None = None
    created_by_hub: bool = False
    seen_at: datetime = Field(default_factory=utcnow)


SCHEMA = SQLModel.metadata  # every table above: what ``alembic revision --autogenerate`` diffs
