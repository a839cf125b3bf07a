"""Terminal output: data on stdout, status and errors on stderr, JSON on request."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def _console(stderr: bool) -> Console:
    """A console that never breaks a line (soft wrap: a record stays one line in pipes and
    logs, and a terminal wraps it whole) and prints text as given (no emoji codes)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


@cache
def err() -> Console:
    return _console(stderr=True)


@cache
def out() -> Console:
    return _console(stderr=False)


def emit_json(data: Any, line: bool = False) -> None:
    """JSON on stdout: indented for a terminal, compact (and fast) for pipes; ``line``: one
    line even on a terminal (a record in a stream that a reader takes line by line)."""
    indent = 2 if sys.stdout.isatty() and not line else None
    sys.stdout.write(json.dumps(data, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def emit_json_text(text: str) -> None:
    """JSON already serialised, on stdout as :func:`emit_json` writes it (indented for a
    terminal, else as it is)."""
    if sys.stdout.isatty():
        emit_json(json.loads(text))
        return
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def status(message: str) -> None:
    """A status line on stderr, as written (plain text: no styling to import)."""
    sys.stderr.write(message + "\n")


def error_line(message: str, hint: str | None = None) -> None:
    """One ``error:`` line (and a ``hint:`` line) on stderr."""
    text = " ".join(message.split())
    sys.stderr.write(f"error: {text}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


ARTIFACT_COLUMNS = ("name", "kind", "base", "family", "algo/layout", "size", "autov2", "tags")


def artifact_table(rows: list[dict[str, Any]]) -> None:
    """Artifacts as a table: with rich on a terminal, as plain aligned text in a pipe (the same
    layout, without importing rich)."""
    cells = [
        (
            a["name"],
            a["kind"],
            a["base"],
            a.get("family") or "unknown",
            a["algo"] or a["layout"] or "",
            human_size(a["size"]),
            a["hashes"]["autov2"] or "hash pending",
            ", ".join(a["tags"]),
        )
        for a in rows
    ]
    if not sys.stdout.isatty():
        plain_table(ARTIFACT_COLUMNS, cells)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ARTIFACT_COLUMNS:
        table.add_column(col)
    for row in cells:
        table.add_row(*row)
    print_table(table)


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def plain_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Rows under headers on stdout, columns padded as rich pads a table without a box."""
    widths = [max(map(_width, column)) for column in zip(headers, *rows, strict=True)]
    lines = [
        " " + "  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=True)) + " "
        for row in (headers, *rows)
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout at its natural width: one line per row, never a folded cell, even
    when that is wider than the terminal or the 80 columns rich assumes for a pipe."""
    from rich.measure import Measurement

    console = out()
    table.width = Measurement.get(console, console.options.update_width(1 << 20), table).maximum
    console.print(table, crop=False)


def show_progress(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()


@contextmanager
def byte_progress(label: str, total: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar (bytes, rate, ETA) on stderr; yields the advance callback."""
    with open_progress(label, enabled) as (set_total, advance):
        set_total(total)
        yield advance


@contextmanager
def spinner(label: str, enabled: bool) -> Iterator[Any]:
    """A status line on stderr that a callback updates with the current item."""
    if not show_progress(enabled):
        yield lambda item: None
        return
    with err().status(label) as st:
        yield lambda item: st.update(f"{label} {item}")


def _byte_bars() -> Any:
    """A transient rich ``Progress`` on stderr with byte columns (size, rate, ETA)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
    )


@contextmanager
def open_progress(label: str, enabled: bool) -> Iterator[Any]:
    """A byte progress bar whose total is set later: yields (set_total, advance)."""
    if not show_progress(enabled):
        yield (lambda total: None), (lambda n: None)
        return
    with _byte_bars() as bar:
        task = bar.add_task(label, total=None)
        yield (lambda total: bar.update(task, total=total)), (lambda n: bar.advance(task, n))


@contextmanager
def scan_progress(enabled: bool) -> Iterator[Any]:
    """Bars on stderr for a scan (files read, then files and bytes hashed, rate, ETA);
    yields the callback :func:`hub.scan.scan` reports a ``ScanProgress`` to."""
    if not show_progress(enabled):
        yield lambda progress: None
        return
    with _byte_bars() as bar:
        headers = bar.add_task("reading headers", total=None)
        hashing = bar.add_task("hashing", total=None, visible=False, start=False)

        def update(p: Any) -> None:
            if p.stage == "headers":
                bar.update(headers, description=f"reading headers: {p.files_done} files")
                return
            bar.update(headers, visible=False)
            if not bar.tasks[hashing].started:
                bar.start_task(hashing)
            bar.update(
                hashing,
                visible=True,
                completed=p.bytes_done,
                total=p.bytes_total,
                description=f"hashing {p.files_done}/{p.files_total} files",
            )

        yield update


@contextmanager
def step_progress(enabled: bool) -> Iterator[tuple[Any, Any]]:
    """A stage line and a denoising-step bar on stderr: yields (on_stage, on_step)."""
    if not show_progress(enabled):
        yield (lambda text: None), (lambda done, total: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def on_stage(text: str) -> None:
            bar.update(task, description=text, completed=0, total=None)

        def on_step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield on_stage, on_step
