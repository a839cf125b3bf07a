"""A converter to a format sd-hub does not know: single-file safetensors -> GGUF.

GGUF (version 3, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): the magic
``GGUF``, a uint32 version, uint64 tensor and metadata counts, the metadata key/value pairs,
one info record per tensor (name, dimension count, dimensions innermost first, ggml type,
offset into the data section), then the tensor data, each tensor aligned to
``general.alignment`` bytes from the start of the data section, itself aligned. Everything is
little-endian; strings are a uint64 length and UTF-8 bytes.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import hub
from hub.core.errors import HubError
from hub.plugins.converting import Converter, ConvertJob

MAGIC = b"GGUF"
VERSION = 3
ALIGNMENT = 32
GGML_TYPES = {"float32": 0, "float16": 1}  # numpy dtype name -> ggml type
UINT32, STRING = 4, 8  # GGUF metadata value types


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _pad(fh: BinaryIO) -> None:
    fh.write(b"\0" * (-fh.tell() % ALIGNMENT))


def to_gguf(job: ConvertJob) -> dict[str, Any]:
    """Write every F32/F16 tensor of ``job.source`` to a GGUF file at ``job.output``."""
    from safetensors import safe_open

    with safe_open(job.source, "np") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    metadata = [
        ("general.architecture", STRING, _string("sd-hub-test")),
        ("general.alignment", UINT32, struct.pack("<I", ALIGNMENT)),
    ]
    infos, offset = [], 0
    for name, array in tensors.items():
        if array.dtype.name not in GGML_TYPES:
            raise HubError(f"{job.source}: {name} is {array.dtype.name}; GGUF here takes F32/F16")
        dims = tuple(reversed(array.shape)) or (1,)
        info = _string(name) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
        infos.append(info + struct.pack("<IQ", GGML_TYPES[array.dtype.name], offset))
        offset += array.nbytes + (-array.nbytes % ALIGNMENT)
    with open(job.output, "wb") as out:
        out.write(MAGIC + struct.pack("<IQQ", VERSION, len(tensors), len(metadata)))
        for key, kind, value in metadata:
            out.write(_string(key) + struct.pack("<I", kind) + value)
        out.write(b"".join(infos))
        _pad(out)
        for array in tensors.values():
            out.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
            _pad(out)
    return {"tensors": len(tensors)}


@hub.hookimpl
def register_converters(register):
    register(
        "safetensors-to-gguf",
        Converter(
            "safetensors-to-gguf",
            "safetensors",
            "gguf",
            3,
            to_gguf,
            frozenset({"checkpoint", "vae", "unknown"}),
            writes="gguf",
            suffix=".gguf",
        ),
    )
