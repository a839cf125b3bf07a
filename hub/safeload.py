"""The only way sd-hub reads a pickle: an interpreter that can build nothing but inert data.

Pickled weight files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are read opcode by opcode by
:func:`run_pickle`, a small pickle machine written here. Globals are answered from an exact
table of ``(module, name)`` pairs (SECURITY.md), each mapped to an inert stand-in; nothing is
imported and nothing outside the table is ever called. Any other global, opcode or container
structure refuses the whole file, naming what was found. There is no fallback loader.

:func:`load` returns tensor *descriptors* (no bytes read); :meth:`SafeLoaded.tensor` reads one
tensor's bytes after checking the descriptor against its storage.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.errors import InvalidFileError

MAX_PICKLE_BYTES = 64 << 20
MAX_OPCODES = 20_000_000
MAX_STACK = 1_000_000
MAX_MEMO = 1_000_000
MAX_DEPTH = 200
MAX_TENSORS = 1_000_000
MAX_SECONDS = 60.0
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class PickleRefused(InvalidFileError):
    """A pickle or container sd-hub will not read; the reason names the global, opcode or
    member that caused it."""


# ---------------------------------------------------------------------------------------------
# Inert values


@dataclass(frozen=True)
class DType:
    """A tensor element type: torch name and size in bytes."""

    name: str
    itemsize: int


STORAGE_TYPES = {
    "FloatStorage": DType("float32", 4),
    "HalfStorage": DType("float16", 2),
    "BFloat16Storage": DType("bfloat16", 2),
    "DoubleStorage": DType("float64", 8),
    "LongStorage": DType("int64", 8),
    "IntStorage": DType("int32", 4),
    "ShortStorage": DType("int16", 2),
    "CharStorage": DType("int8", 1),
    "ByteStorage": DType("uint8", 1),
    "BoolStorage": DType("bool", 1),
}


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: DType
    numel: int
    location: str


@dataclass(frozen=True)
class TensorRef:
    """A tensor described by the pickle: where its elements live, not the elements."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> DType:
        return self.storage.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class NumpyDType:
    code: str
    byteorder: str = "<"


_NUMPY_CODES = {
    "b1": "?",
    "i1": "b",
    "i2": "h",
    "i4": "i",
    "i8": "q",
    "u1": "B",
    "u2": "H",
    "u4": "I",
    "u8": "Q",
    "f2": "e",
    "f4": "f",
    "f8": "d",
}


@dataclass
class NdArray:
    """A numpy array from training metadata: dtype, shape and raw bytes (never numpy)."""

    dtype: NumpyDType | None = None
    shape: tuple[int, ...] = ()
    data: bytes = b""


class Placeholder:
    """An instance of an allowed class (Lightning ModelCheckpoint, torch ParameterDict): it
    holds the plain data the pickle gave it and nothing else."""

    kind = "object"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<{self.kind}>"


class ModelCheckpointStandIn(Placeholder):
    kind = "pytorch_lightning ModelCheckpoint"


class ParameterDictStandIn(Placeholder):
    kind = "torch ParameterDict"

    def items(self) -> list[tuple[str, Any]]:
        params = self.state.get("_parameters", {})
        return list(params.items()) if isinstance(params, dict) else []


class _Refuse(Exception):
    """Internal: abort reading with a reason (turned into PickleRefused with the path)."""


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise _Refuse(reason)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _ordered_dict(*args: Any) -> OrderedDict[Any, Any]:
    _require(
        args == () or (len(args) == 1 and isinstance(args[0], list | tuple)),
        "collections.OrderedDict called with unexpected arguments",
    )
    out: OrderedDict[Any, Any] = OrderedDict()
    for pair in args[0] if args else ():
        _require(isinstance(pair, list | tuple) and len(pair) == 2, "bad OrderedDict item")
        out[pair[0]] = pair[1]
    return out


def _empty_hooks(hooks: Any) -> None:
    _require(isinstance(hooks, dict) and not hooks, "tensor with backward hooks")


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorRef:
    _require(isinstance(storage, StorageRef), "tensor rebuilt from something not a storage")
    _require(_is_int(offset) and offset >= 0, "tensor offset is not a non-negative int")
    for seq, what in ((size, "size"), (stride, "stride")):
        _require(
            isinstance(seq, tuple) and all(_is_int(v) and v >= 0 for v in seq),
            f"tensor {what} is not a tuple of non-negative ints",
        )
    _require(len(size) == len(stride), "tensor size and stride differ in length")
    return TensorRef(storage, offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> TensorRef:
    _empty_hooks(OrderedDict() if hooks is None else hooks)
    _require(
        metadata is None or metadata == {} or metadata == OrderedDict(), "tensor with metadata"
    )
    _require(type(requires_grad) is bool, "requires_grad is not a bool")
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(tensor: Any, requires_grad: Any = False, hooks: Any = None) -> TensorRef:
    _require(isinstance(tensor, TensorRef), "parameter wrapping something not a tensor")
    _empty_hooks(OrderedDict() if hooks is None else hooks)
    return tensor


def _numpy_dtype(code: Any, align: Any = False, copy: Any = True) -> NumpyDType:
    _require(isinstance(code, str) and code in _NUMPY_CODES, f"numpy dtype {code!r} refused")
    return NumpyDType(code)


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | bool:
    _require(isinstance(dtype, NumpyDType), "numpy scalar without a plain dtype")
    _require(isinstance(data, bytes), "numpy scalar without raw bytes")
    fmt = ("<" if dtype.byteorder in ("<", "=", "|") else ">") + _NUMPY_CODES[dtype.code]
    _require(len(data) == struct.calcsize(fmt), "numpy scalar bytes do not match its dtype")
    return struct.unpack(fmt, data)[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    _require(
        isinstance(text, str) and encoding in ("latin1", "latin-1"),
        "_codecs.encode used other than for latin-1 bytes",
    )
    return text.encode("latin-1")


def _make_set(items: Any = ()) -> set[Any]:
    _require(isinstance(items, list | tuple | set), "set built from a non-sequence")
    return set(items)


def _np_reconstruct(cls: Any, shape: Any, dtype: Any) -> NdArray:
    _require(cls is NdArray, "numpy _reconstruct of something not an ndarray")
    return NdArray()


# The whole table. Adding a pair requires a real file that needs it, and a test.
GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): dtype for name, dtype in STORAGE_TYPES.items()},
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): ModelCheckpointStandIn,
    ("__builtin__", "set"): _make_set,
    ("builtins", "set"): _make_set,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): NdArray,
    ("torch.nn.modules.container", "ParameterDict"): ParameterDictStandIn,
}
_CALLABLE = {v for v in GLOBALS.values() if callable(v) and not isinstance(v, type)}
_CLASSES = {ModelCheckpointStandIn, ParameterDictStandIn}

# ---------------------------------------------------------------------------------------------
# The pickle machine

_REFUSED_OPS = {
    "INST",
    "OBJ",
    "PERSID",
    "EXT1",
    "EXT2",
    "EXT4",
    "NEWOBJ_EX",
    "NEXT_BUFFER",
    "READONLY_BUFFER",
}


def _build(obj: Any, state: Any) -> None:
    if isinstance(obj, OrderedDict) and not isinstance(obj, Placeholder):
        _require(
            isinstance(state, dict) and set(state) <= {"_metadata"},
            "BUILD on an OrderedDict with state other than _metadata",
        )
    elif isinstance(obj, Placeholder):
        _require(
            isinstance(state, dict) and all(isinstance(k, str) for k in state),
            f"BUILD on {obj.kind} with a non-dict state",
        )
        obj.state.update(state)
    elif isinstance(obj, NumpyDType):
        _require(
            isinstance(state, tuple) and len(state) >= 2 and state[1] in "<>|=",
            "BUILD on a numpy dtype with an unexpected state",
        )
        object.__setattr__(obj, "byteorder", state[1])
    elif isinstance(obj, NdArray):
        _require(isinstance(state, tuple) and len(state) == 5, "BUILD on ndarray: bad state")
        _, shape, dtype, _fortran, raw = state
        _require(isinstance(dtype, NumpyDType), "ndarray of an object or unknown dtype")
        _require(
            isinstance(shape, tuple) and all(_is_int(d) and d >= 0 for d in shape),
            "ndarray shape is not a tuple of ints",
        )
        _require(isinstance(raw, bytes), "ndarray without raw bytes")
        count = 1
        for d in shape:
            count *= d
        _require(
            count * struct.calcsize(_NUMPY_CODES[dtype.code]) == len(raw),
            "ndarray bytes do not match its shape",
        )
        obj.dtype, obj.shape, obj.data = dtype, shape, raw
    else:
        raise _Refuse(f"BUILD on {type(obj).__name__}")


def run_pickle(
    data: bytes, persistent_load: Any = None, start: int = 0, must_end: bool = True
) -> tuple[Any, int]:
    """Interpret one pickle from ``data[start:]`` and return ``(value, end offset)``.

    Raises ``_Refuse`` (internal) with the reason; callers wrap it with the file name.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: dict[int, Any] = {}
    proto = None
    frame_end: int | None = None
    deadline = time.monotonic() + MAX_SECONDS
    count = 0
    try:
        ops = pickletools.genops(stream)
        for op, arg, pos in ops:
            count += 1
            if count % 100_000 == 0 and time.monotonic() > deadline:
                raise _Refuse("pickle took too long to read (a bomb?)")
            _require(count <= MAX_OPCODES, "too many pickle opcodes")
            if frame_end is not None:
                _require(pos <= frame_end, "a FRAME length disagrees with its content")
                if pos == frame_end:
                    frame_end = None
            name = op.name
            if count == 1:
                _require(name == "PROTO", "pickle does not start with PROTO")
            if name in _REFUSED_OPS:
                raise _Refuse(f"opcode {name} refused")
            if proto is not None:
                _require(op.proto <= proto, f"opcode {name} is newer than protocol {proto}")
            if name == "PROTO":
                _require(count == 1 and 2 <= arg <= 5, f"protocol {arg} refused")
                proto = arg
            elif name == "FRAME":
                _require(proto is not None and proto >= 4, "FRAME below protocol 4")
                frame_end = stream.tell() + arg
                _require(frame_end <= len(data), "a FRAME runs past the end of the pickle")
            elif name == "STOP":
                _require(len(stack) == 1 and not marks, "pickle ends with a malformed stack")
                end = stream.tell()
                _require(
                    frame_end is None or end == frame_end,
                    "a FRAME length disagrees with its content",
                )
                if must_end:
                    _require(end == len(data), "bytes after the end of the pickle")
                return stack[0], end
            elif name == "MARK":
                _require(len(marks) < MAX_DEPTH, "pickle nesting too deep")
                marks.append(stack)
                stack = []
            elif name in ("POP", "POP_MARK", "DUP"):
                if name == "POP_MARK":
                    _require(bool(marks), "POP_MARK without MARK")
                    stack = marks.pop()
                elif name == "POP":
                    _require(bool(stack), "POP on an empty stack")
                    stack.pop()
                else:
                    _require(bool(stack), "DUP on an empty stack")
                    stack.append(stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                _require(bool(stack), f"{name} on an empty stack")
                index = len(memo) if name == "MEMOIZE" else arg
                _require(_is_int(index) and 0 <= index < MAX_MEMO, "memo index out of range")
                memo[index] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                _require(arg in memo, f"memo slot {arg} was never set")
                stack.append(memo[arg])
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, qual = arg.partition(" ")
                else:
                    _require(len(stack) >= 2, "STACK_GLOBAL on a short stack")
                    qual = stack.pop()
                    module = stack.pop()
                    _require(
                        isinstance(module, str) and isinstance(qual, str),
                        "STACK_GLOBAL with names that are not strings",
                    )
                if (module, qual) not in GLOBALS:
                    raise _Refuse(f"global {module}.{qual} is not allowed")
                stack.append(GLOBALS[(module, qual)])
            elif name == "REDUCE":
                _require(len(stack) >= 2, "REDUCE on a short stack")
                args = stack.pop()
                func = stack.pop()
                _require(isinstance(args, tuple), "REDUCE arguments are not a tuple")
                if func is NdArray or func in _CLASSES:
                    raise _Refuse(f"REDUCE on class {getattr(func, 'kind', 'ndarray')}")
                _require(func in _CALLABLE, "REDUCE on something not callable")
                stack.append(func(*args))
            elif name == "NEWOBJ":
                _require(len(stack) >= 2, "NEWOBJ on a short stack")
                args = stack.pop()
                cls = stack.pop()
                _require(
                    cls in _CLASSES and isinstance(args, tuple),
                    "NEWOBJ on something not an allowed class",
                )
                stack.append(cls(*args))
            elif name == "BUILD":
                _require(len(stack) >= 2, "BUILD on a short stack")
                state = stack.pop()
                _build(stack[-1], state)
            elif name == "BINPERSID":
                _require(
                    bool(stack) and persistent_load is not None,
                    "persistent id where none is allowed",
                )
                stack.append(persistent_load(stack.pop()))
            else:
                _data_op(name, arg, stack, marks)
            _require(len(stack) <= MAX_STACK, "pickle stack too large")
    except _Refuse:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        struct.error,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise _Refuse(f"malformed pickle ({type(exc).__name__}: {exc})"[:300]) from None
    raise _Refuse("pickle has no STOP")


def _pop_mark(stack: list[Any], marks: list[list[Any]]) -> tuple[list[Any], list[Any]]:
    _require(bool(marks), "opcode needs a MARK")
    items = stack
    return marks.pop(), items


def _data_op(name: str, arg: Any, stack: list[Any], marks: list[list[Any]]) -> list[Any]:
    """The data-building opcodes. Mutates ``stack`` in place (or replaces it via marks)."""
    if name in (
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
    ):
        stack.append(arg)
    elif name == "BYTEARRAY8":
        stack.append(bytes(arg))
    elif name == "NONE":
        stack.append(None)
    elif name in ("NEWTRUE", "NEWFALSE"):
        stack.append(name == "NEWTRUE")
    elif name == "EMPTY_LIST":
        stack.append([])
    elif name == "EMPTY_DICT":
        stack.append({})
    elif name == "EMPTY_TUPLE":
        stack.append(())
    elif name == "EMPTY_SET":
        stack.append(set())
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        _require(len(stack) >= n, f"{name} on a short stack")
        items = tuple(stack[-n:])
        del stack[-n:]
        stack.append(items)
    elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
        outer, items = _pop_mark(stack, marks)
        if name == "TUPLE":
            value: Any = tuple(items)
        elif name == "LIST":
            value = list(items)
        elif name == "FROZENSET":
            value = frozenset(items)
        else:
            _require(len(items) % 2 == 0, "DICT with an odd number of items")
            value = dict(zip(items[::2], items[1::2], strict=True))
        stack[:] = outer + [value]
    elif name in ("APPEND", "SETITEM"):
        n = 1 if name == "APPEND" else 2
        _require(len(stack) > n, f"{name} on a short stack")
        target = stack[-n - 1]
        if name == "APPEND":
            _require(type(target) is list, "APPEND to something not a list")
            target.append(stack.pop())
        else:
            _require(type(target) in (dict, OrderedDict), "SETITEM on something not a dict")
            value = stack.pop()
            key = stack.pop()
            target[key] = value
    elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
        outer, items = _pop_mark(stack, marks)
        _require(bool(outer), f"{name} without a target")
        target = outer[-1]
        if name == "APPENDS":
            _require(type(target) is list, "APPENDS to something not a list")
            target.extend(items)
        elif name == "ADDITEMS":
            _require(type(target) is set, "ADDITEMS to something not a set")
            target.update(items)
        else:
            _require(type(target) in (dict, OrderedDict), "SETITEMS on something not a dict")
            _require(len(items) % 2 == 0, "SETITEMS with an odd number of items")
            for k, v in zip(items[::2], items[1::2], strict=True):
                target[k] = v
        stack[:] = outer
    else:
        raise _Refuse(f"opcode {name} refused")
    return stack


# ---------------------------------------------------------------------------------------------
# Containers


_TORCHSCRIPT = re.compile(r"(^|/)(constants\.pkl|code/)")
_KNOWN_MEMBERS = {
    "version",
    ".format_version",
    ".storage_alignment",
    "byteorder",
    ".data/serialization_id",
    ".data/version",
    "data.pkl",
}


@dataclass
class SafeLoaded:
    """A pickle read safely: the inert object, and the bytes of its storages on demand."""

    path: Path
    container: str
    obj: Any
    _zip: zipfile.ZipFile | None = None
    _prefix: str = ""
    _legacy: dict[str, bytes] = field(default_factory=dict)
    _cache: dict[str, bytes] = field(default_factory=dict)

    @property
    def root(self) -> Any:
        """The weights part: a Lightning checkpoint's ``state_dict``, else the object."""
        obj = self.obj
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            return obj["state_dict"]
        return obj

    def tensor_refs(self) -> dict[str, TensorRef]:
        """Every tensor under :attr:`root` by dotted path (no bytes read)."""
        refs = dict(iter_tensors(self.root))
        if len(refs) > MAX_TENSORS:
            raise PickleRefused(self.path, "too many tensors")
        return refs

    def plain_fields(self) -> dict[str, Any]:
        """Top-level values that are plain JSON data (names, steps, settings)."""
        obj = self.obj if isinstance(self.obj, dict) else {}
        return {str(k): v for k, v in obj.items() if _plain(v)}

    def storage_bytes(self, ref: StorageRef) -> bytes:
        if ref.key not in self._cache:
            if self._zip is not None:
                with self._zip.open(f"{self._prefix}data/{ref.key}") as fh:
                    self._cache = {ref.key: fh.read()}  # CRC checked by the zip reader
            else:
                self._cache = {ref.key: self._legacy[ref.key]}
        return self._cache[ref.key]

    def tensor(self, ref: TensorRef) -> Any:
        """The torch tensor a descriptor names (a copy, owning its memory)."""
        import torch

        raw = self.storage_bytes(ref.storage)
        dtype = getattr(torch, ref.dtype.name)
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return torch.as_strided(flat, ref.shape, ref.stride, ref.offset).clone()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple) and depth < 3 and len(value) < 1000:
        return all(_plain(v, depth + 1) for v in value)
    return False


def _check_tensor(ref: TensorRef) -> None:
    if ref.numel == 0:
        return
    reach = ref.offset + sum((d - 1) * s for d, s in zip(ref.shape, ref.stride, strict=True))
    _require(
        reach < ref.storage.numel,
        f"a tensor reaches element {reach} of a storage of {ref.storage.numel}",
    )


def iter_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, TensorRef]]:
    """Every tensor in a loaded object with a dotted path, each shared object visited once."""
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [(prefix, obj)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, TensorRef):
            yield path, value
            continue
        if id(value) in seen:
            continue
        if isinstance(value, dict | list | tuple | ParameterDictStandIn):
            seen.add(id(value))
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, ParameterDictStandIn):
            items = value.items()
        else:
            continue
        for key, child in reversed(items):
            todo.append((f"{path}.{key}" if path else str(key), child))


def _storage_pid(declared: dict[str, StorageRef], legacy: bool) -> Any:
    def persistent_load(pid: Any) -> StorageRef:
        _require(
            isinstance(pid, tuple) and len(pid) == (6 if legacy else 5),
            "persistent id is not a storage tuple",
        )
        tag, stype, key, location, numel = pid[:5]
        _require(tag == "storage", "persistent id is not a storage")
        _require(isinstance(stype, DType), "storage of an unknown type")
        _require(
            isinstance(key, str) and key.isdigit() and key.isascii(),
            f"storage key {key!r} is not a decimal string",
        )
        _require(isinstance(location, str) and len(location) < 64, "bad storage location")
        _require(_is_int(numel) and numel >= 0, "storage element count is not an int")
        if legacy:
            _require(pid[5] is None, "storage views are refused")
        ref = StorageRef(key, stype, numel, location)
        if key in declared:
            _require(declared[key] == ref, f"storage {key} declared twice differently")
        declared[key] = ref
        return ref

    return persistent_load


def _check_local_headers(fh: Any, infos: list[zipfile.ZipInfo]) -> None:
    """Each member's local header must agree with the central directory (PyTorch's reader
    trusts one, Python's the other: a disagreement is how scanners get fooled)."""
    for info in infos:
        fh.seek(info.header_offset)
        head = fh.read(30)
        _require(
            len(head) == 30 and head[:4] == b"PK\x03\x04",
            f"zip member {info.filename}: no local header",
        )
        _, flags, method, _, _, crc, csize, usize, nlen, elen = struct.unpack(
            "<HHHHHIIIHH", head[4:]
        )
        name = fh.read(nlen)
        _require(
            name == info.filename.encode("utf-8") or name == info.filename.encode("cp437"),
            f"zip member {info.filename}: local and central names differ",
        )
        _require(
            method == info.compress_type and (flags & 1) == 0,
            f"zip member {info.filename}: local header disagrees (method or flags)",
        )
        if not flags & 0x8:
            _require(
                (crc, csize, usize) == (info.CRC, info.compress_size, info.file_size)
                or (csize, usize) == (0xFFFFFFFF, 0xFFFFFFFF),
                f"zip member {info.filename}: local header sizes or CRC disagree",
            )


def _load_zip(path: Path, fh: Any) -> SafeLoaded:
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _Refuse(f"broken zip container ({exc})") from None
    infos = archive.infolist()
    names = [i.filename for i in infos]
    _require(len(names) == len(set(names)), "zip has two members with the same name")
    for info in infos:
        n = info.filename
        _require(
            not n.startswith("/") and "\\" not in n and "\0" not in n and ".." not in n.split("/"),
            f"zip member name {n!r} refused",
        )
        _require(not _TORCHSCRIPT.search(n), "a TorchScript archive, which sd-hub refuses")
        _require(info.compress_type == zipfile.ZIP_STORED, f"zip member {n} is compressed")
        _require(not info.flag_bits & 0x1, f"zip member {n} is encrypted")
    _check_local_headers(fh, infos)
    tops = {n.split("/", 1)[0] for n in names}
    _require(
        len(tops) == 1 and all("/" in n for n in names),
        "zip members are not all under one top-level folder",
    )
    prefix = tops.pop() + "/"
    rels = [n[len(prefix) :] for n in names]
    pkls = [r for r in rels if r.endswith(".pkl")]
    _require(pkls == ["data.pkl"], f"expected exactly one data.pkl, found {pkls or 'none'}")
    members: dict[str, int] = {}
    for rel, info in zip(rels, infos, strict=True):
        if rel.startswith("data/"):
            _require(rel[5:].isdigit() and rel[5:].isascii(), f"zip member {rel} refused")
            members[rel[5:]] = info.file_size
        else:
            _require(rel in _KNOWN_MEMBERS, f"unexpected zip member {rel}")
    small: dict[str, bytes] = {}
    for rel, info in zip(rels, infos, strict=True):
        if not rel.startswith("data/"):  # read whole: the zip reader checks each CRC
            _require(info.file_size <= MAX_PICKLE_BYTES, f"zip member {rel} is too large")
            try:
                small[rel] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise _Refuse(f"zip member {rel}: {exc} (bad CRC or header)") from None
    order = small.get("byteorder", b"little").strip()
    _require(order == b"little", "big-endian PyTorch files are not supported")
    pickle_bytes = small["data.pkl"]
    declared: dict[str, StorageRef] = {}
    obj, _ = run_pickle(pickle_bytes, _storage_pid(declared, legacy=False))
    _require(set(members) <= set(declared), "zip has data members the pickle never uses")
    for key, ref in declared.items():
        _require(key in members, f"storage {key} has no data/{key} member")
        _require(
            members[key] == ref.numel * ref.dtype.itemsize,
            f"storage {key}: member has {members[key]} bytes, "
            f"expected {ref.numel * ref.dtype.itemsize}",
        )
    loaded = SafeLoaded(
        path,
        "pytorch zip",
        obj,
        _zip=archive,
        _prefix=prefix,
    )
    for _, ref in iter_tensors(obj):
        _check_tensor(ref)
    return loaded


def _load_legacy(path: Path, data: bytes) -> SafeLoaded:
    magic, pos = run_pickle(data, must_end=False)
    _require(magic == LEGACY_MAGIC, "a pickle that is not a PyTorch file")
    protocol, pos = run_pickle(data, start=pos, must_end=False)
    _require(protocol == LEGACY_PROTOCOL, f"legacy protocol {protocol!r} refused")
    info, pos = run_pickle(data, start=pos, must_end=False)
    _require(
        isinstance(info, dict) and info.get("little_endian") is True,
        "legacy file is not little-endian",
    )
    declared: dict[str, StorageRef] = {}
    obj, pos = run_pickle(data, _storage_pid(declared, legacy=True), start=pos, must_end=False)
    keys, pos = run_pickle(data, start=pos, must_end=False)
    _require(
        isinstance(keys, list) and all(isinstance(k, str) for k in keys),
        "legacy storage key list is malformed",
    )
    _require(sorted(keys) == sorted(declared), "legacy storage keys do not match the pickle")
    blobs: dict[str, bytes] = {}
    for key in keys:
        _require(pos + 8 <= len(data), "legacy storage data is truncated")
        (count,) = struct.unpack("<q", data[pos : pos + 8])
        ref = declared[key]
        _require(
            count == ref.numel, f"legacy storage {key} has {count} elements, expected {ref.numel}"
        )
        size = count * ref.dtype.itemsize
        _require(pos + 8 + size <= len(data), "legacy storage data is truncated")
        blobs[key] = data[pos + 8 : pos + 8 + size]
        pos += 8 + size
    _require(pos == len(data), "bytes after the last legacy storage")
    loaded = SafeLoaded(path, "legacy pytorch", obj, _legacy=blobs)
    for _, ref in iter_tensors(obj):
        _check_tensor(ref)
    return loaded


def load(path: str | Path) -> SafeLoaded:
    """Read a pickled file without executing it; raises :class:`PickleRefused` with the
    reason for anything outside what real model files contain."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
            if head.startswith(b"PK\x03\x04"):
                return _load_zip(path, path.open("rb"))
            if len(head) >= 262 and head[257:262] == b"ustar":
                raise _Refuse("a legacy PyTorch tar archive, which sd-hub refuses")
            if head.startswith((b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b", b"Rar!", b"BZh")):
                raise _Refuse("a compressed archive, not a PyTorch file")
            if head.startswith(b"\x93NUMPY"):
                raise _Refuse("a numpy .npy file, which sd-hub refuses")
            fh.seek(0, 2)
            size = fh.tell()
            _require(size <= 16 << 30, "file too large for the legacy format")
            fh.seek(0)
            data = fh.read()
    except OSError as exc:
        raise PickleRefused(path, f"cannot read: {exc.strerror or exc}") from None
    except _Refuse as exc:
        raise PickleRefused(path, str(exc)) from None
    try:
        return _load_legacy(path, data)
    except _Refuse as exc:
        raise PickleRefused(path, str(exc)) from None
