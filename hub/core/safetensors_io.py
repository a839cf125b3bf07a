"""Streaming safetensors writer: the header first (from names, dtypes and shapes), then each
tensor's bytes as it is produced, into a temp file that is fsync-ed and renamed into place.
Peak memory is one tensor, whatever the file size."""

from __future__ import annotations

import gc
import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hub.core.errors import HubError
from hub.core.files import DurableWriter
from hub.core.formats import DTYPE_BITS

if TYPE_CHECKING:
    import torch

    from hub.core.hashing import Hasher

TORCH_TO_ST = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
EMIT_BYTES = 8 << 20
ITEMSIZE = {name: bits // 8 for name, bits in DTYPE_BITS.items() if bits % 8 == 0}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to write: its name, safetensors dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n


def st_dtype(tensor: torch.Tensor) -> str:
    return TORCH_TO_ST[str(tensor.dtype).removeprefix("torch.")]


@contextmanager
def _streaming_cpu() -> Iterator[None]:
    """The process set up for a streaming job: torch on one intra-op thread (each tensor's
    math is small next to its bytes, and idle OpenMP workers spin on the cores the hashing
    and writing threads need), and the cyclic garbage collector paused (the job allocates
    tensors and futures by the thousand and makes no cycles; each collection holds the GIL
    that the writer needs)."""
    import torch

    threads, collecting = torch.get_num_threads(), gc.isenabled()
    torch.set_num_threads(1)
    gc.disable()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if collecting:
            gc.enable()


def write_safetensors(
    target: Path,
    specs: Iterable[TensorSpec],
    produce: Callable[[TensorSpec], torch.Tensor | Iterable[torch.Tensor]],
    metadata: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    hasher: Hasher | None = None,
) -> Path:
    """Write a safetensors file tensor by tensor; ``produce`` returns each tensor on demand,
    or an iterable of row slices of it (so a big tensor never needs to be whole in memory).

    The layout follows the reference writer (larger dtypes first, then by name; the header
    padded to 8 bytes). The file appears under ``target`` only when complete. With a
    ``hasher``, every byte is hashed (and written, on its workers) as it goes: the caller
    gets the file's hashes from ``hasher.finish()`` without reading it again."""
    import torch

    ordered = sorted(specs, key=lambda s: (-ITEMSIZE[s.dtype], s.name))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for spec in ordered:
        header[spec.name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    os.close(fd)
    try:
        with _streaming_cpu(), DurableWriter(tmp, length=8 + len(raw) + offset) as writer:
            if hasher is not None:
                hasher.with_sink(writer)
            emit = hasher.update if hasher is not None else writer.write
            try:
                emit(struct.pack("<Q", len(raw)) + raw)
                for spec in ordered:
                    produced = produce(spec)
                    pieces = [produced] if isinstance(produced, torch.Tensor) else produced
                    written = 0
                    for piece in pieces:
                        tail = tuple(piece.shape[1:])
                        if st_dtype(piece) != spec.dtype or tail != spec.shape[1:]:
                            raise ValueError(
                                f"{spec.name}: produced {piece.dtype}{list(piece.shape)}"
                                f", declared {spec.dtype}{list(spec.shape)}"
                            )
                        flat = piece.detach().to("cpu").contiguous().reshape(-1)
                        data = flat.view(torch.uint8).numpy().data if flat.numel() else b""
                        for offset in range(0, len(data), EMIT_BYTES):  # slices keep the
                            emit(data[offset : offset + EMIT_BYTES])  # hashing pipelined
                        written += flat.numel() * ITEMSIZE[spec.dtype]
                    if written != spec.nbytes:
                        raise ValueError(
                            f"{spec.name}: produced {written} bytes, declared {spec.nbytes}"
                        )
                    if progress:
                        progress(spec.nbytes)
            finally:
                if hasher is not None:
                    hasher.finish_pending()  # every write lands before the file closes
            writer.sync()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


ST_TO_TORCH = {v: k for k, v in TORCH_TO_ST.items()}


FLOAT_ST = {"F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2"}
DTYPES = {
    "fp32": "F32",
    "fp16": "F16",
    "bf16": "BF16",
    "fp8": "F8_E4M3",  # what fp8 Flux/SD3 files use; rounded as torch's .to() rounds
    "fp8_e4m3": "F8_E4M3",
    "fp8_e5m2": "F8_E5M2",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
}


def dtype_named(name: str | None) -> str | None:
    """The safetensors dtype a user's ``--dtype`` names (``bf16``, ``fp8``...), None for
    none; an unknown name is a one-line error."""
    if name is None:
        return None
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise HubError(
            f"unknown dtype '{name}'", hint="use fp32, fp16, bf16, fp8 or fp8_e5m2"
        ) from None


def cast_checked(tensor: torch.Tensor, st: str | None, name: str = "") -> torch.Tensor:
    """``tensor`` in safetensors dtype ``st`` (floating tensors only; None keeps it) as
    torch's ``.to()`` rounds; a value beyond an fp8 format's range is a one-line error."""
    import torch

    if st is None or st_dtype(tensor) not in FLOAT_ST:
        return tensor
    dtype = getattr(torch, ST_TO_TORCH[st])
    if dtype.is_floating_point and dtype.itemsize == 1:
        limit = torch.finfo(dtype).max  # beyond it torch's cast gives NaN, not the maximum
        peak = float(tensor.float().abs().max()) if tensor.numel() else 0.0
        if peak > limit:
            raise HubError(
                f"tensor {name} holds {peak:g}, beyond {st}'s largest value {limit:g}",
                hint="keep this file in bf16 or fp16",
            )
    return tensor.to(dtype)


class SafetensorsReader:
    """Reads one tensor at a time with plain reads (no memory map), so the pages of tensors
    already processed do not stay in the process's memory. Use it in a ``with`` block (or call
    :meth:`close`): it holds the file open."""

    def __init__(self, path: Path) -> None:
        from hub.core.formats import read_header

        self.path = Path(path)
        self.header = read_header(self.path)
        self._fd = os.open(self.path, os.O_RDONLY)

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (a second call does nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def metadata(self) -> dict[str, str]:
        return self.header.metadata

    def spec(self, name: str) -> TensorSpec:
        info = self.header.tensors[name]
        return TensorSpec(name, info.dtype, info.shape)

    def tensor(self, name: str) -> torch.Tensor:
        info = self.header.tensors[name]
        return self.rows(name, 0, info.shape[0] if info.shape else 1)

    def rows(self, name: str, lo: int, hi: int) -> torch.Tensor:
        """Rows ``lo:hi`` of a tensor (the whole of a 0-d one), reading only their bytes."""
        import torch

        info = self.header.tensors[name]
        shape = info.shape
        row = (info.end - info.start) // shape[0] if shape and shape[0] else 0
        start = info.start + lo * row if shape else info.start
        size = (hi - lo) * row if shape else info.end - info.start
        dtype = getattr(torch, ST_TO_TORCH[info.dtype])
        out_shape = (hi - lo, *shape[1:]) if shape else shape
        raw = torch.empty(size, dtype=torch.uint8)  # not zeroed: every byte is read into it
        view, done = memoryview(raw.numpy()), 0
        while done < size:
            n = os.preadv(self._fd, [view[done:]], self.header.data_offset + start + done)
            if n <= 0:
                raise OSError(f"{self.path}: short read")
            done += n
        return raw.view(dtype).reshape(out_shape)
