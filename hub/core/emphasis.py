"""Prompt emphasis and long prompts, as A1111 users write them.

``(words)`` multiplies their attention by 1.1 and ``[words]`` divides it by 1.1, nested
brackets multiply; ``(words:1.5)`` sets the factor; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\``
are literal characters; a bracket left open applies to the end of the prompt. ``BREAK`` ends
the current chunk. A prompt is encoded in chunks of 75 tokens (each framed by start and end
tokens, 77 in all), breaking at a comma within the last 20 tokens of a full chunk; the
chunks' encodings are concatenated. Each token's encoding is multiplied by its weight, and
the chunk's encoding is then rescaled to keep its mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROUND, SQUARE = 1.1, 1 / 1.1
CHUNK = 75
COMMA_BACKTRACK = 20
BREAK = "BREAK"

Pieces = list[tuple[str, float]]  # a parsed prompt: (text, weight), BREAK with weight -1

_TOKEN = re.compile(
    r"\\[()\[\]\\]"  # an escaped bracket or backslash
    r"|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)"  # ':1.5)' closing a weighted group
    r"|[()\[\]]"
    r"|\bBREAK\b"
    r"|[^\\()\[\]:B]+|.",
    re.S,
)


def parse(text: str) -> Pieces:
    """(text, weight) pieces of a prompt, neighbours of equal weight merged; ``BREAK`` is its
    own piece with weight -1. An empty prompt is ``[("", 1.0)]``."""
    pieces: list[list[Any]] = []
    rounds: list[int] = []  # where each open bracket's range starts in ``pieces``
    squares: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            rounds.append(len(pieces))
        elif token == "[":
            squares.append(len(pieces))
        elif weight is not None and rounds:
            scale(rounds.pop(), float(weight))
        elif token == ")" and rounds:
            scale(rounds.pop(), ROUND)
        elif token == "]" and squares:
            scale(squares.pop(), SQUARE)
        elif token == BREAK:
            pieces.append([BREAK, -1.0])
        else:
            pieces.append([token, 1.0])
    for start in rounds:
        scale(start, ROUND)
    for start in squares:
        scale(start, SQUARE)
    merged: list[tuple[str, float]] = []
    for piece_text, piece_weight in pieces:
        if merged and merged[-1][1] == piece_weight and piece_weight != -1.0:
            merged[-1] = (merged[-1][0] + piece_text, piece_weight)
        else:
            merged.append((piece_text, piece_weight))
    return merged or [("", 1.0)]


def plain_text(pieces: Pieces) -> str:
    """The prompt's text without its emphasis syntax."""
    return "".join(text for text, weight in pieces if weight != -1.0)


@dataclass
class Chunk:
    """75 token ids and their weights (start, end and padding not included)."""

    ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunks(
    pieces: Pieces,
    tokenize: Callable[[str], list[int]],
    comma: int,
    groups: Mapping[int, int] | None = None,
) -> list[Chunk]:
    """Split a parsed prompt into chunks of at most 75 tokens, the A1111 way: a chunk that
    fills up moves the tokens after its last comma (if within 20 tokens of the end) to the
    next one; ``BREAK`` starts a new chunk; a unit of several tokens (an embedding's vectors:
    ``groups`` maps its first token to its length) that does not fit in the current chunk
    starts the next one. At least one chunk, maybe empty."""
    groups = groups or {}
    done: list[Chunk] = []
    current = Chunk()
    last_comma = -1
    for text, weight in pieces:
        if weight == -1.0:  # BREAK
            done.append(current)
            current, last_comma = Chunk(), -1
            continue
        for token in tokenize(text):
            if token == comma:
                last_comma = len(current.ids)
            elif (
                len(current.ids) == CHUNK
                and last_comma != -1
                and len(current.ids) - last_comma <= COMMA_BACKTRACK
            ):
                cut = last_comma + 1
                moved = Chunk(current.ids[cut:], current.weights[cut:])
                done.append(Chunk(current.ids[:cut], current.weights[:cut]))
                current, last_comma = moved, -1
            if len(current.ids) + groups.get(token, 1) > CHUNK:
                done.append(current)
                current, last_comma = Chunk(), -1
            current.ids.append(token)
            current.weights.append(weight)
    if current.ids or not done:
        done.append(current)
    return done


def needs_chunks(pieces: Pieces, chunked: list[Chunk]) -> bool:
    """Whether a prompt needs this module's encoding: it has emphasis or ``BREAK``, or more
    than one chunk. Any other prompt encodes as a plain 77-token prompt does."""
    return len(chunked) > 1 or any(weight != 1.0 for _, weight in pieces)


def frame(chunk: Chunk, start: int, end: int, pad: int) -> tuple[list[int], list[float]]:
    """The 77 ids of a chunk (start token, ids, end token, padding) and their weights."""
    padding = CHUNK - len(chunk.ids)
    ids = [start, *chunk.ids, end] + [pad] * padding
    return ids, [1.0, *chunk.weights, 1.0] + [1.0] * padding


def reweight(z: Any, weights: Any) -> Any:
    """A chunk's encoding ``z`` [77, dim] with each token's row multiplied by its weight
    [77], then rescaled so that its mean is what it was (unless the weighted mean is 0)."""
    if bool((weights == 1).all()):
        return z
    original = z.mean()
    z = z * weights.unsqueeze(-1).to(z.dtype)
    weighted = z.mean()
    return z * (original / weighted) if bool(weighted != 0) else z
