"""Raw generation metadata of an image file (IMAGE_METADATA.md §1): PNG text chunks, EXIF
text tags with ``UserComment`` decoded, and XMP, each entry capped in size.

PNG chunks are read here (no pixel decoding, no Pillow text limits that would refuse the
whole file); JPEG and WebP EXIF/XMP go through Pillow. Nothing is parsed beyond text.
"""

from __future__ import annotations

import html
import json
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidFileError
from hub.plugins.imaging import ImageMetadata

MAX_ENTRY = 4 << 20  # characters of one metadata entry; a larger one is skipped with a note
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
# IFD0 text tags generators write into (ComfyUI puts "key:json" in Model, Make, ...)
IFD0_TEXT = {
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x0131: "Software",
    0x013B: "Artist",
    0x927C: "MakerNote",
}
_KEYED_JSON = re.compile(r"^(\w+):\s*(?=[\[{])")
_XMP_COMMENT = re.compile(
    r"<exif:UserComment>(.*?)</exif:UserComment>|exif:UserComment=\"([^\"]*)\"", re.S
)
_XMP_LI = re.compile(r"<rdf:li[^>]*>(.*?)</rdf:li>", re.S)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


class _Collector:
    """Text entries with the size cap and the notes on what was skipped."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.notes: list[str] = []

    def add(self, key: str, value: str | None) -> None:
        if value is None:
            return
        if len(value) > MAX_ENTRY:
            self.notes.append(f"'{key}' is {_mb(len(value))}, over {_mb(MAX_ENTRY)}: skipped")
            return
        self.text[key] = value.replace("\0", "")

    def too_big(self, key: str, size: int) -> bool:
        if size > MAX_ENTRY:
            self.notes.append(f"'{key}' is {_mb(size)}, over {_mb(MAX_ENTRY)}: skipped")
            return True
        return False


def _inflate(data: bytes, key: str, out: _Collector) -> bytes | None:
    d = zlib.decompressobj()
    try:
        plain = d.decompress(data, MAX_ENTRY + 1)
    except zlib.error as exc:
        out.notes.append(f"'{key}': damaged compressed text ({exc})")
        return None
    if len(plain) > MAX_ENTRY or d.unconsumed_tail:
        out.notes.append(f"'{key}' inflates to over {_mb(MAX_ENTRY)}: skipped")
        return None
    return plain


def _png_text(ctype: bytes, data: bytes, out: _Collector) -> None:
    key_raw, _, rest = data.partition(b"\0")
    key = key_raw.decode("latin-1")
    if ctype == b"tEXt":
        out.add(key, rest.decode("latin-1"))
    elif ctype == b"zTXt":
        plain = _inflate(rest[1:], key, out)
        if plain is not None:
            out.add(key, plain.decode("latin-1"))
    else:  # iTXt: flag, method, language\0, translated keyword\0, text
        flag = rest[:1] == b"\x01"
        _lang, _, rest = rest[2:].partition(b"\0")
        _tkey, _, body = rest.partition(b"\0")
        plain = _inflate(body, key, out) if flag else body
        if plain is not None:
            try:
                out.add(key, plain.decode("utf-8"))
            except UnicodeDecodeError as exc:
                out.notes.append(f"'{key}': invalid UTF-8 ({exc.reason}): skipped")


def _read_png(path: Path, out: _Collector) -> None:
    with path.open("rb") as fh:
        fh.seek(len(PNG_SIGNATURE))
        while head := fh.read(8):
            if len(head) < 8:
                break
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"IEND":
                break
            if ctype in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
                if out.too_big(f"{ctype.decode()} chunk", length):
                    fh.seek(length + 4, 1)
                    continue
                data = fh.read(length)
                if len(data) < length:
                    out.notes.append(f"damaged PNG: the {ctype.decode()} chunk is cut short")
                    break
                fh.seek(4, 1)
                if ctype == b"eXIf":
                    _exif_text(lambda data=data: _load_exif(data), out)
                else:
                    _png_text(ctype, data, out)
            else:
                fh.seek(length + 4, 1)


def _utf16(data: bytes) -> str:
    """UTF-16 text after ``UNICODE\\0``: the BOM, else the byte order with more zero bytes
    in the high position; UTF-8 when there are no zero bytes at all."""
    if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return data.decode("utf-16")
    head = data[:1000]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if even == odd == 0:
        return data.decode("utf-8")
    return data.decode("utf-16-be" if even >= odd else "utf-16-le")


def decode_user_comment(raw: bytes | str) -> str:
    """EXIF UserComment text: the 8-byte charset code (``UNICODE``, ``ASCII``, ``JIS``,
    undefined), then the data; raises UnicodeDecodeError on text that is none of them."""
    if isinstance(raw, str):
        return raw
    code, data = raw[:8], raw[8:]
    if code == b"UNICODE\0":
        return _utf16(data)
    if code.rstrip(b"\0") in (b"ASCII", b"JIS", b""):
        return data.decode("utf-8", errors="replace")
    return raw.decode("utf-8", errors="replace")  # no charset code: plain text


def _exif_value(key: str, value: Any, out: _Collector) -> None:
    if isinstance(value, bytes):
        if out.too_big(key, len(value)):
            return
        try:
            value = decode_user_comment(value) if key == "UserComment" else value.decode()
        except UnicodeDecodeError as exc:
            if key == "UserComment":
                out.notes.append(f"'{key}': not valid UTF-16 or UTF-8 text ({exc.reason}): skipped")
            return  # another tag's binary data (a camera's MakerNote): not text
    if not isinstance(value, str):
        return
    keyed = _KEYED_JSON.match(value)
    if keyed and key != "UserComment":  # ComfyUI WebP: "prompt:{...}" in Model, Make, ...
        out.add(keyed[1], value[keyed.end() :])
    else:
        out.add(key, value)


def _load_exif(data: bytes) -> Any:
    from PIL import Image

    exif = Image.Exif()
    exif.load(data)
    return exif


def _exif_text(get_exif: Callable[[], Any], out: _Collector) -> None:
    """The text tags of the EXIF block ``get_exif`` returns; damage becomes a note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif = get_exif()
            for tag, name in IFD0_TEXT.items():
                if tag in exif:
                    _exif_value(name, exif[tag], out)
            for ifd in (exif, exif.get_ifd(EXIF_IFD)):
                if USER_COMMENT in ifd:
                    _exif_value("UserComment", ifd[USER_COMMENT], out)
        except (SyntaxError, ValueError, struct.error, OSError, KeyError, TypeError) as exc:
            out.notes.append(f"damaged EXIF ({exc}): not read")
    out.notes.extend(f"damaged EXIF: {w.message}" for w in caught[:3])


def _xmp_text(xmp: bytes | str, out: _Collector) -> None:
    text = xmp.decode("utf-8", errors="replace") if isinstance(xmp, bytes) else xmp
    out.add("XMP", text)
    m = _XMP_COMMENT.search(text[:MAX_ENTRY])
    if m:
        body = m[1] if m[1] is not None else m[2]
        li = _XMP_LI.search(body)
        out.add("XMP:UserComment", html.unescape(li[1] if li else body).strip())


def _stealth_text(path: Path, out: _Collector) -> None:
    """Text hidden in a PNG's pixel bits (:mod:`hub.stealth`): NovelAI's JSON object of its
    text chunks becomes those entries, anything else (Forge's infotext) ``parameters``."""
    from PIL import Image

    from hub.stealth import StealthError, read_stealth

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                found = read_stealth(img, MAX_ENTRY)
    except StealthError as exc:
        out.notes.append(f"hidden metadata in the pixels: {exc}")
        return
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        out.notes.append(f"pixels not read for hidden metadata ({exc})")
        return
    if found is None:
        return
    signature, text = found
    out.notes.append(f"metadata read from the pixels ({signature})")
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and ("Software" in data or "Comment" in data):
        for key, value in data.items():
            out.add(str(key), value if isinstance(value, str) else json.dumps(value))
    else:
        out.add("parameters", text)


def read_metadata(path: Path) -> ImageMetadata:
    """Every text entry an image carries, by keyword; raises InvalidFileError for a file
    that is not a readable image."""
    out = _Collector()
    try:
        with path.open("rb") as fh:
            is_png = fh.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError as exc:
        raise InvalidFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if is_png:
        try:
            _read_png(path, out)
        except (OSError, struct.error, ValueError) as exc:
            out.notes.append(f"damaged PNG chunk ({exc}): later chunks not read")
        if "XML:com.adobe.xmp" in out.text:
            _xmp_text(out.text.pop("XML:com.adobe.xmp"), out)
        if not out.text and not out.notes:  # the pixels only when intact chunks say nothing
            _stealth_text(path, out)
        return ImageMetadata(str(path), "png", out.text, out.notes)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings on damaged data: notes instead
            img = Image.open(path)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise InvalidFileError(path, f"not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise InvalidFileError(path, f"not read: {exc}") from None
    with img:
        container = (img.format or "image").lower()
        _exif_text(img.getexif, out)
        if xmp := img.info.get("xmp"):
            _xmp_text(xmp, out)
    return ImageMetadata(str(path), container, out.text, out.notes)
