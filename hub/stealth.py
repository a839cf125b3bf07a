"""Generation metadata hidden in a PNG's pixels ("stealth pnginfo", IMAGE_METADATA.md §1):
the least significant bits of the alpha channel (``stealth_pnginfo``, gzip-compressed
``stealth_pngcomp``) or of R, G and B in turn (``stealth_rgbinfo`` / ``stealth_rgbcomp``),
read column by column (x outer, y inner), each byte most significant bit first: the
15-byte signature, a 32-bit payload length in bits, the payload (UTF-8 text). Forge writes
its infotext there, NovelAI a JSON object of its text chunks.

Sizes are capped: the pixels looked at, the payload's length and what it inflates to.
"""

from __future__ import annotations

import zlib
from typing import Any

SIGNATURES = {
    b"stealth_pnginfo": ("alpha", False),
    b"stealth_pngcomp": ("alpha", True),
    b"stealth_rgbinfo": ("rgb", False),
    b"stealth_rgbcomp": ("rgb", True),
}
SIGNATURE_BITS = 15 * 8
LENGTH_BITS = 32
MAX_PIXELS = 50_000_000  # larger images are not searched (a note says so)


class StealthError(ValueError):
    """Hidden metadata that is there (its signature is) but cannot be read."""


def _bits(img: Any) -> dict[str, Any]:
    """The LSB streams of an RGB(A) image in reading order: ``alpha`` (one bit a pixel) and
    ``rgb`` (three), as numpy arrays of 0/1."""
    import numpy as np

    pixels = np.asarray(img.convert("RGBA") if img.mode not in ("RGB", "RGBA") else img)
    columns = pixels.transpose(1, 0, 2) & 1  # x outer, y inner
    streams = {"rgb": columns[:, :, :3].reshape(-1)}
    if pixels.shape[2] == 4:
        streams["alpha"] = columns[:, :, 3].reshape(-1)
    return streams


def _bytes(bits: Any) -> bytes:
    import numpy as np

    return np.packbits(bits[: len(bits) // 8 * 8]).tobytes()


def read_stealth(img: Any, max_text: int) -> tuple[str, str] | None:
    """(signature, text) hidden in ``img`` (a Pillow image), None when it holds none; raises
    :class:`StealthError` for a payload that is cut short, too long or not text."""
    if img.width * img.height > MAX_PIXELS:
        raise StealthError(f"{img.width}x{img.height} pixels: too many to search for hidden text")
    for mode, bits in _bits(img).items():
        signature = _bytes(bits[:SIGNATURE_BITS])
        if SIGNATURES.get(signature, (None,))[0] != mode:
            continue
        compressed = SIGNATURES[signature][1]
        head = SIGNATURE_BITS + LENGTH_BITS
        length = int.from_bytes(_bytes(bits[SIGNATURE_BITS:head]), "big")
        name = signature.decode()
        if length % 8 or length > len(bits) - head:
            raise StealthError(f"{name}: a payload of {length} bits does not fit the image")
        if not compressed and length > max_text * 8:
            raise StealthError(f"{name}: {length // 8} bytes of text, over {max_text}")
        payload = _bytes(bits[head : head + length])
        return name, _text(name, _inflate(name, payload, max_text) if compressed else payload)
    return None


def _inflate(name: str, payload: bytes, max_text: int) -> bytes:
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
    try:
        plain = d.decompress(payload, max_text + 1)
    except zlib.error as exc:
        raise StealthError(f"{name}: damaged gzip data ({exc})") from None
    if len(plain) > max_text or d.unconsumed_tail:
        raise StealthError(f"{name}: inflates to over {max_text} bytes")
    return plain


def _text(name: str, payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StealthError(f"{name}: not UTF-8 text ({exc.reason})") from None
