"""Recognise a weight file by its content, and read a safetensors header strictly.

Nothing here loads tensor data. The header checks follow the reference safetensors parser
plus sd-hub's own: duplicate names and a header not starting with ``{`` are refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hub.core.errors import InvalidFileError

MAX_HEADER = 100_000_000
MAX_METADATA = 16 << 20

DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class Container(StrEnum):
    """What a file is, judged from its first bytes."""

    SAFETENSORS = "safetensors"
    TORCH_ZIP = "pytorch zip"
    PICKLE = "pickle"
    LEGACY_TAR = "legacy tar"
    HTML = "html page"
    LFS_POINTER = "git lfs pointer"
    JSON = "json"
    EMPTY = "empty file"
    OTHER_ARCHIVE = "archive"
    UNKNOWN = "unknown"


_LFS = b"version https://git-lfs.github.com/spec/v1"
_BOM = b"\xef\xbb\xbf"


def _looks_like_html(head: bytes) -> bool:
    """Markup after optional whitespace and a UTF-8 byte-order mark."""
    return head.lstrip().removeprefix(_BOM).lstrip()[:1] == b"<"


def sniff(head: bytes, size: int) -> Container:
    """Classify a file from its first bytes (at least 512 when the file has them).

    Binary formats are recognised by their own structure first; a file is called HTML only
    when none of them fits, so a safetensors header length such as 0x3C20 (bytes ``20 3C``,
    a space and ``<``) is not mistaken for markup.
    """
    if size == 0:
        return Container.EMPTY
    if len(head) >= 9 and head[8:9] == b"{":
        (length,) = struct.unpack("<Q", head[:8])
        if length <= MAX_HEADER:
            return Container.SAFETENSORS
    if head.startswith(_LFS):
        return Container.LFS_POINTER
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Container.TORCH_ZIP
    if head.startswith((b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b", b"Rar!", b"BZh")):
        return Container.OTHER_ARCHIVE
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Container.LEGACY_TAR
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Container.PICKLE
    if head.lstrip()[:1] in (b"{", b"["):
        return Container.JSON
    if _looks_like_html(head):
        return Container.HTML
    if head[:1] in (b"(", b"}", b"]", b"c") and b"\n" in head[:64]:
        return Container.PICKLE  # protocol 0/1 pickles start with an opcode, not PROTO
    return Container.UNKNOWN


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of a safetensors file: tensors by name, and ``__metadata__``."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    header_length: int = 0

    @property
    def data_offset(self) -> int:
        return 8 + self.header_length

    def shape(self, name: str) -> tuple[int, ...] | None:
        info = self.tensors.get(name)
        return info.shape if info else None


_INT = frozenset({int})  # the one type shapes and offsets hold (not bool, not float)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def parse_header(path: object, raw: bytes, file_size: int) -> SafetensorsHeader:
    """Validate a safetensors header (``raw`` = the N header bytes) against the file size."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFileError(path, "safetensors header is not UTF-8") from None
    if not text.lstrip(" ").startswith("{"):
        raise InvalidFileError(path, "safetensors header is not a JSON object")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise InvalidFileError(path, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidFileError(path, "safetensors header is not a JSON object")
    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidFileError(path, "safetensors __metadata__ must map strings to strings")
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA:
        raise InvalidFileError(path, "safetensors __metadata__ is too large")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise InvalidFileError(path, f"tensor '{name}' has a malformed header entry") from None
        if dtype not in DTYPE_BITS:
            raise InvalidFileError(path, f"tensor '{name}' has unknown dtype {dtype!r}")
        ints = [*shape, begin, end] if isinstance(shape, list) else None
        if ints is None or not _INT.issuperset(map(type, ints)) or min(ints) < 0:
            raise InvalidFileError(path, f"tensor '{name}' has a malformed shape or offsets")
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or end < begin or end - begin != bits // 8:
            raise InvalidFileError(
                path, f"tensor '{name}': offsets {begin}..{end} do not match {dtype}{shape}"
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), begin, end)
    position = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != position:
            problem = "overlaps another tensor" if info.start < position else "leaves a gap"
            raise InvalidFileError(path, f"safetensors header lies: tensor '{name}' {problem}")
        position = info.end
    if 8 + len(raw) + position != file_size:
        raise InvalidFileError(
            path,
            f"safetensors data is {file_size - 8 - len(raw)} bytes but the header describes "
            f"{position} (truncated or padded file)",
        )
    return SafetensorsHeader(tensors, dict(metadata), len(raw))


def describe_non_safetensors(container: Container) -> str:
    """The one-line reason a file of this container is not read as safetensors."""
    return {
        Container.EMPTY: "empty file",
        Container.HTML: "an HTML page, not model weights (a login or error page saved as a file?)",
        Container.LFS_POINTER: "a Git LFS pointer, not the file (fetch it with git lfs pull)",
        Container.JSON: "a JSON document, not model weights",
        Container.LEGACY_TAR: "a legacy PyTorch tar archive, which sd-hub refuses",
        Container.OTHER_ARCHIVE: "a compressed archive, not model weights",
        Container.TORCH_ZIP: "a pickled PyTorch file",
        Container.PICKLE: "a pickle",
        Container.UNKNOWN: "not a recognised model file",
    }.get(container, str(container))


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file; no tensor data is read."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(512)
            kind = sniff(head, size)
            if kind is not Container.SAFETENSORS:
                if size >= 8 and kind is Container.UNKNOWN:
                    (length,) = struct.unpack("<Q", head[:8])
                    if length > MAX_HEADER or 8 + length > size:
                        raise InvalidFileError(path, "safetensors header length is beyond the file")
                raise InvalidFileError(path, describe_non_safetensors(kind))
            (length,) = struct.unpack("<Q", head[:8])
            if 8 + length > size:
                raise InvalidFileError(
                    path, f"truncated: header of {length} bytes in a file of {size} bytes"
                )
            fh.seek(8)
            raw = fh.read(length)
    except OSError as exc:
        raise InvalidFileError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_header(path, raw, size)
