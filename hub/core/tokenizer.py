"""CLIP tokenizers built from the BPE merges shipped in ``hub/data`` (no download).

SD1 and SDXL's first encoder pad with ``<|endoftext|>``; SD2 and SDXL's OpenCLIP encoder pad
with ``!`` (token 0), as their published tokenizer files do.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from typing import Any

VOCAB_SIZE = 49408
_MERGES = VOCAB_SIZE - 256 * 2 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table, in CLIP's order (printable bytes
    first, then the rest mapped above U+0100)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return table


@cache
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    raw = resources.files("hub.data").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _MERGES + 1]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in lines]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, [tuple(m.split()) for m in lines]


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """A fresh ``transformers.CLIPTokenizer`` with CLIP's vocabulary, 77 positions."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=77
    )
