"""A block of lines sd-hub owns inside a user's text file (a config it must not otherwise
touch), between a begin and an end marker line: written, replaced or removed while every
other byte of the file stays as it was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hub.core.errors import HubError


def _find(lines: list[str], begin: str, end: str, path: Path) -> tuple[int, int] | None:
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == end]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise HubError(
            f"{path}: sd-hub's section markers are damaged ({len(starts)} begin, {len(ends)} end)",
            hint=f"remove the lines from '{begin}' to '{end}' by hand, then run again",
        )
    return starts[0], ends[0]


def put_block(text: str, begin: str, end: str, body: str, path: Path) -> str:
    """``text`` with the block (``begin``, ``body`` lines, ``end``) replaced, or appended
    after a blank line when there is none yet."""
    block = f"{begin}\n{body.rstrip(chr(10))}\n{end}\n"
    lines = text.splitlines(keepends=True)
    found = _find(lines, begin, end, path)
    if found is not None:
        start, stop = found
        return "".join(lines[:start]) + block + "".join(lines[stop + 1 :])
    if not text:
        return block
    return text + ("" if text.endswith("\n") else "\n") + "\n" + block


def drop_block(text: str, begin: str, end: str, path: Path) -> str:
    """``text`` without the block (and the blank line :func:`put_block` put before it)."""
    lines = text.splitlines(keepends=True)
    found = _find(lines, begin, end, path)
    if found is None:
        return text
    start, stop = found
    if start > 0 and lines[start - 1].strip() == "":
        start -= 1
    return "".join(lines[:start]) + "".join(lines[stop + 1 :])


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content in one rename (same folder, same permissions)."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
