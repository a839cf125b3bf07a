"""The registry's schema, declared as SQLModel tables.

The migrations (``migrations/versions``) create it and the registry code reads and writes it
in SQL (``queries.py``, ``writes.py``: no ORM import on the command path, which keeps start-up
short). These classes are the declaration new migrations are generated from
(``target_metadata`` in ``migrations/env.py``); a test checks the two never drift apart."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, Text, UniqueConstraint
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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


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


SCHEMA = SQLModel.metadata  # every table above: what ``alembic revision --autogenerate`` diffs
