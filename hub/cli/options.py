"""Options and argument parsers the command modules share."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print JSON on stdout.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
KIND = typer.Option(None, "--kind", help="checkpoint, lora, embedding, hypernetwork, vae.")
BASE = typer.Option(None, "--base", help="sd1, sd2, sdxl, sdxl-refiner, ...")
TAGS = typer.Option(None, "--tag", "-t", help="A tag (repeatable).")


def parse_kind_option(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_kind

    return parse_kind(text)


def parse_base_option(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_base

    return parse_base(text)


def kind_option(text: str | None) -> str | None:
    return str(parse_kind_option(text)) if text else None


def base_option(text: str | None) -> str | None:
    return str(parse_base_option(text)) if text else None
