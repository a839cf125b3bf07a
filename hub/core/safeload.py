"""The only way sd-hub reads a pickle: an interpreter that can build nothing but inert data.

Pickled weight files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are read opcode by opcode by
:func:`run_pickle`, a small pickle machine written here: :data:`OPCODES` maps each opcode it
reads to its handler, and any other opcode is refused. Globals are answered from an exact
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hub.core.errors import InvalidFileError

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
# The pickle machine: a table from opcode name to handler. An opcode missing from the table
# is refused, among them INST, OBJ, PERSID, EXT1, EXT2, EXT4, NEWOBJ_EX, NEXT_BUFFER and
# READONLY_BUFFER (they look classes up by name or code, or read out-of-band buffers).


class _Machine:
    """The state of one pickle being read: its stack, marks, memo, protocol and frame."""

    __slots__ = (
        "data",
        "stream",
        "stack",
        "marks",
        "memo",
        "proto",
        "frame_end",
        "persistent_load",
        "must_end",
    )

    def __init__(self, data: bytes, persistent_load: Any, start: int, must_end: bool) -> None:
        self.data = data
        self.stream = io.BytesIO(data)
        self.stream.seek(start)
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto: int | None = None
        self.frame_end: int | None = None
        self.persistent_load = persistent_load
        self.must_end = must_end

    def pop_mark(self) -> list[Any]:
        """The items pushed since the last MARK; the stack below it becomes current again."""
        _require(bool(self.marks), "opcode needs a MARK")
        items = self.stack
        self.stack = self.marks.pop()
        return items


# A handler returns None, or (value, end offset) when the pickle is complete (STOP).
_Handler = Callable[[_Machine, Any], tuple[Any, int] | None]


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


def _push_arg(m: _Machine, arg: Any) -> None:
    m.stack.append(arg)


def _push_bytearray(m: _Machine, arg: Any) -> None:
    m.stack.append(bytes(arg))


def _push_new(make: Callable[[], Any]) -> _Handler:
    """NONE, NEWTRUE, EMPTY_LIST and the like: push a constant or a new empty container."""

    def push(m: _Machine, arg: Any) -> None:
        m.stack.append(make())

    return push


def _tuple_of_top(n: int) -> _Handler:
    """TUPLE1, TUPLE2, TUPLE3: the top ``n`` items become one tuple."""
    name = f"TUPLE{n}"

    def pack(m: _Machine, arg: Any) -> None:
        _require(len(m.stack) >= n, f"{name} on a short stack")
        items = tuple(m.stack[-n:])
        del m.stack[-n:]
        m.stack.append(items)

    return pack


def _from_mark(make: Callable[[list[Any]], Any]) -> _Handler:
    """TUPLE, LIST, FROZENSET: the items since the last MARK become one container."""

    def collect(m: _Machine, arg: Any) -> None:
        items = m.pop_mark()
        m.stack.append(make(items))

    return collect


def _dict(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    _require(len(items) % 2 == 0, "DICT with an odd number of items")
    m.stack.append(dict(zip(items[::2], items[1::2], strict=True)))


def _append(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) > 1, "APPEND on a short stack")
    _require(type(m.stack[-2]) is list, "APPEND to something not a list")
    value = m.stack.pop()
    m.stack[-1].append(value)


def _setitem(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) > 2, "SETITEM on a short stack")
    target = m.stack[-3]
    _require(type(target) in (dict, OrderedDict), "SETITEM on something not a dict")
    value = m.stack.pop()
    key = m.stack.pop()
    target[key] = value


def _target_and_items(m: _Machine, name: str) -> tuple[Any, list[Any]]:
    """APPENDS, SETITEMS, ADDITEMS: the items since the last MARK and the object below it."""
    items = m.pop_mark()
    _require(bool(m.stack), f"{name} without a target")
    return m.stack[-1], items


def _appends(m: _Machine, arg: Any) -> None:
    target, items = _target_and_items(m, "APPENDS")
    _require(type(target) is list, "APPENDS to something not a list")
    target.extend(items)


def _additems(m: _Machine, arg: Any) -> None:
    target, items = _target_and_items(m, "ADDITEMS")
    _require(type(target) is set, "ADDITEMS to something not a set")
    target.update(items)


def _setitems(m: _Machine, arg: Any) -> None:
    target, items = _target_and_items(m, "SETITEMS")
    _require(type(target) in (dict, OrderedDict), "SETITEMS on something not a dict")
    _require(len(items) % 2 == 0, "SETITEMS with an odd number of items")
    for k, v in zip(items[::2], items[1::2], strict=True):
        target[k] = v


def _mark(m: _Machine, arg: Any) -> None:
    _require(len(m.marks) < MAX_DEPTH, "pickle nesting too deep")
    m.marks.append(m.stack)
    m.stack = []


def _pop_mark(m: _Machine, arg: Any) -> None:
    _require(bool(m.marks), "POP_MARK without MARK")
    m.stack = m.marks.pop()


def _pop(m: _Machine, arg: Any) -> None:
    _require(bool(m.stack), "POP on an empty stack")
    m.stack.pop()


def _dup(m: _Machine, arg: Any) -> None:
    _require(bool(m.stack), "DUP on an empty stack")
    m.stack.append(m.stack[-1])


def _memo_put(name: str) -> _Handler:
    """PUT, BINPUT, LONG_BINPUT (at the index given) and MEMOIZE (at the next index)."""

    def put(m: _Machine, arg: Any) -> None:
        _require(bool(m.stack), f"{name} on an empty stack")
        index = len(m.memo) if name == "MEMOIZE" else arg
        _require(_is_int(index) and 0 <= index < MAX_MEMO, "memo index out of range")
        m.memo[index] = m.stack[-1]

    return put


def _memo_get(m: _Machine, arg: Any) -> None:
    _require(arg in m.memo, f"memo slot {arg} was never set")
    m.stack.append(m.memo[arg])


def _push_global(m: _Machine, module: str, qual: str) -> None:
    if (module, qual) not in GLOBALS:
        raise _Refuse(f"global {module}.{qual} is not allowed")
    m.stack.append(GLOBALS[(module, qual)])


def _global(m: _Machine, arg: Any) -> None:
    module, _, qual = arg.partition(" ")
    _push_global(m, module, qual)


def _stack_global(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) >= 2, "STACK_GLOBAL on a short stack")
    qual = m.stack.pop()
    module = m.stack.pop()
    _require(
        isinstance(module, str) and isinstance(qual, str),
        "STACK_GLOBAL with names that are not strings",
    )
    _push_global(m, module, qual)


def _reduce(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) >= 2, "REDUCE on a short stack")
    args = m.stack.pop()
    func = m.stack.pop()
    _require(isinstance(args, tuple), "REDUCE arguments are not a tuple")
    if func is NdArray or func in _CLASSES:
        raise _Refuse(f"REDUCE on class {getattr(func, 'kind', 'ndarray')}")
    _require(func in _CALLABLE, "REDUCE on something not callable")
    m.stack.append(func(*args))


def _newobj(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) >= 2, "NEWOBJ on a short stack")
    args = m.stack.pop()
    cls = m.stack.pop()
    _require(
        cls in _CLASSES and isinstance(args, tuple), "NEWOBJ on something not an allowed class"
    )
    m.stack.append(cls(*args))


def _build_op(m: _Machine, arg: Any) -> None:
    _require(len(m.stack) >= 2, "BUILD on a short stack")
    state = m.stack.pop()
    _build(m.stack[-1], state)


def _binpersid(m: _Machine, arg: Any) -> None:
    _require(bool(m.stack) and m.persistent_load is not None, "persistent id where none is allowed")
    m.stack.append(m.persistent_load(m.stack.pop()))


def _proto(m: _Machine, arg: Any) -> None:
    _require(m.proto is None and 2 <= arg <= 5, f"protocol {arg} refused")  # first opcode only
    m.proto = arg


def _frame(m: _Machine, arg: Any) -> None:
    _require(m.proto is not None and m.proto >= 4, "FRAME below protocol 4")
    m.frame_end = m.stream.tell() + arg
    _require(m.frame_end <= len(m.data), "a FRAME runs past the end of the pickle")


def _stop(m: _Machine, arg: Any) -> tuple[Any, int]:
    _require(len(m.stack) == 1 and not m.marks, "pickle ends with a malformed stack")
    end = m.stream.tell()
    _require(m.frame_end is None or end == m.frame_end, "a FRAME length disagrees with its content")
    if m.must_end:
        _require(end == len(m.data), "bytes after the end of the pickle")
    return m.stack[0], end


_SCALARS = (
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING"
    " UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8"
)

# The whole interpreter: every opcode sd-hub reads, and what it does.
OPCODES: dict[str, _Handler] = {
    "PROTO": _proto,
    "FRAME": _frame,
    "STOP": _stop,
    **dict.fromkeys(_SCALARS.split(), _push_arg),
    "BYTEARRAY8": _push_bytearray,
    "NONE": _push_new(lambda: None),
    "NEWTRUE": _push_new(lambda: True),
    "NEWFALSE": _push_new(lambda: False),
    "EMPTY_TUPLE": _push_new(tuple),
    "EMPTY_LIST": _push_new(list),
    "EMPTY_DICT": _push_new(dict),
    "EMPTY_SET": _push_new(set),
    "TUPLE1": _tuple_of_top(1),
    "TUPLE2": _tuple_of_top(2),
    "TUPLE3": _tuple_of_top(3),
    "TUPLE": _from_mark(tuple),
    "LIST": _from_mark(list),
    "FROZENSET": _from_mark(frozenset),
    "DICT": _dict,
    "APPEND": _append,
    "APPENDS": _appends,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "ADDITEMS": _additems,
    "MARK": _mark,
    "POP_MARK": _pop_mark,
    "POP": _pop,
    "DUP": _dup,
    **{name: _memo_put(name) for name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE")},
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _memo_get),
    "GLOBAL": _global,
    "STACK_GLOBAL": _stack_global,
    "REDUCE": _reduce,
    "NEWOBJ": _newobj,
    "BUILD": _build_op,
    "BINPERSID": _binpersid,
}


def run_pickle(
    data: bytes, persistent_load: Any = None, start: int = 0, must_end: bool = True
) -> tuple[Any, int]:
    """Interpret one pickle from ``data[start:]`` and return ``(value, end offset)``.

    Raises ``_Refuse`` (internal) with the reason; callers wrap it with the file name.
    """
    m = _Machine(data, persistent_load, start, must_end)
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for count, (op, arg, pos) in enumerate(pickletools.genops(m.stream), 1):
            if count % 100_000 == 0 and time.monotonic() > deadline:
                raise _Refuse("pickle took too long to read (a bomb?)")
            if count > MAX_OPCODES:  # checks made on every opcode are inlined (a training
                raise _Refuse("too many pickle opcodes")  # state has millions of opcodes)
            if m.frame_end is not None:
                _require(pos <= m.frame_end, "a FRAME length disagrees with its content")
                if pos == m.frame_end:
                    m.frame_end = None
            name = op.name
            if count == 1:
                _require(name == "PROTO", "pickle does not start with PROTO")
            handler = OPCODES.get(name)
            if handler is None:
                raise _Refuse(f"opcode {name} refused")
            if m.proto is not None and op.proto > m.proto:
                raise _Refuse(f"opcode {name} is newer than protocol {m.proto}")
            done = handler(m, arg)
            if done is not None:
                return done
            if len(m.stack) > MAX_STACK:
                raise _Refuse("pickle stack too large")
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
    """A pickle read safely: the inert object, and the bytes of its storages on demand.
    Use it in a ``with`` block (or call :meth:`close`): it holds a zip file open."""

    path: Path
    container: str
    obj: Any
    _zip: zipfile.ZipFile | None = None
    _file: BinaryIO | None = None
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
        """Close the file the storages are read from (a second call does nothing)."""
        if self._zip is not None:
            self._zip.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> SafeLoaded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _load_zip(path: Path) -> SafeLoaded:
    """A PyTorch zip file, read from a file that the result owns (or that is closed here if
    the file is refused)."""
    fh = path.open("rb")
    try:
        return _read_zip(path, fh)
    except BaseException:
        fh.close()
        raise


def _read_zip(path: Path, fh: BinaryIO) -> SafeLoaded:
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
        _file=fh,
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
                return _load_zip(path)
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
