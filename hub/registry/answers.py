"""What share sites answered, kept locally (table ``site_answer``): the version and model
JSON of identified files, and "not found" answers with the time they were given, so that
``show``, ``--fits`` and ``outdated`` work offline and a later run asks only for what is
missing or stale. Keys are ``sha256:HEX``, ``autov3:HEX``, ``version:ID``, ``model:ID``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.registry.db import Database

NOT_FOUND_TTL = timedelta(days=7)  # a "not found" is asked again after a week


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _parse(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value)).replace(tzinfo=None)


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def load(db: Database, site: str, keys: Iterable[str]) -> dict[str, tuple[bool, Any, datetime]]:
    """``key -> (found, body, fetched_at)`` for the keys that have an answer."""
    out: dict[str, tuple[bool, Any, datetime]] = {}
    wanted = sorted(set(keys))
    with db.reader() as reader:
        for chunk in _chunks(wanted):
            marks = ", ".join(f":k{n}" for n in range(len(chunk)))
            rows = reader.rows(
                "SELECT key, found, body, fetched_at FROM site_answer "
                f"WHERE site = :site AND key IN ({marks})",
                {"site": site, **{f"k{n}": k for n, k in enumerate(chunk)}},
            )
            for r in rows:
                body = json.loads(r["body"]) if r["body"] else None
                out[r["key"]] = (bool(r["found"]), body, _parse(r["fetched_at"]))
    return out


def load_all(db: Database, site: str, prefix: str) -> dict[str, Any]:
    """Every found answer whose key starts with ``prefix`` (``model:``...), by key."""
    with db.reader() as reader:
        rows = reader.rows(
            "SELECT key, body FROM site_answer WHERE site = :site AND found = :t AND key LIKE :p",
            {"site": site, "t": True, "p": prefix + "%"},
        )
    return {r["key"]: json.loads(r["body"]) for r in rows if r["body"]}


def fresh(answer: tuple[bool, Any, datetime] | None, now: datetime | None = None) -> bool:
    """Whether a stored answer still stands: a hit always, a "not found" for a week."""
    if answer is None:
        return False
    found, _, fetched = answer
    return found or (now or _now()) - fetched < NOT_FOUND_TTL


def store(db: Database, site: str, answers: dict[str, Any | None]) -> None:
    """Keep answers (``None``: not found), replacing older ones for the same keys, in one
    transaction."""
    if not answers:
        return
    now = _now()
    with db.session() as session:
        for key, body in answers.items():
            session.execute(
                "DELETE FROM site_answer WHERE site = :site AND key = :key",
                {"site": site, "key": key},
            )
            session.execute(
                "INSERT INTO site_answer (site, key, found, body, fetched_at) "
                "VALUES (:site, :key, :found, :body, :at)",
                {
                    "site": site,
                    "key": key,
                    "found": body is not None,
                    "body": json.dumps(body) if body is not None else None,
                    "at": now.strftime("%Y-%m-%d %H:%M:%S.%f") if db.is_sqlite else now,
                },
            )
