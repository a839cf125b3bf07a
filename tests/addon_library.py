"""A generated model library: many small add-ons with real headers, spread over an A1111 tree
and a ComfyUI tree, some files in both (same bytes), some with a Civitai sidecar.

Each file takes the tensor names and shapes of a few whole modules of a mini add-on built by
peft/diffusers/LyCORIS code (tests/minimodels.py: kohya LoRA for SD1 and SDXL, LoCon, LoHa,
LoKr, a textual-inversion embedding), random bytes as tensor data, and for kohya-style files
the real kohya ``__metadata__`` Civitai stores (tests/realdata/lora_headers), with the output
name and tag frequencies made per file. Deterministic for a seed. Used by tests/test_scan_*.py
and bench/scan_library.py.
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections import defaultdict
from pathlib import Path

import minimodels

REALDATA = Path(__file__).parent / "realdata" / "lora_headers"
KOHYA_METADATA = REALDATA / "kohya_sdxl_pony_metadata.as_stored_by_civitai.json"
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "U8": 1}
WORDS = [
    "pixel",
    "watercolor",
    "ink",
    "neon",
    "castle",
    "forest",
    "portrait",
    "anime",
    "sketch",
    "chrome",
]


def _templates() -> list[tuple[str, Path, str]]:
    """(label, mini file, the UI folder kind) of each add-on shape the library uses."""
    mm = minimodels
    return [
        ("kohya-sd1", mm.kohya_lora("sd1"), "lora"),
        ("kohya-sdxl", mm.kohya_lora("sdxl"), "lora"),
        ("locon", mm.lycoris_lora("sd1", "locon"), "lora"),
        ("loha", mm.lycoris_lora("sd1", "loha"), "lora"),
        ("lokr", mm.lycoris_lora("sd1", "lokr"), "lora"),
        ("embedding", mm.embedding("sd1"), "embedding"),
    ]


def _header(path: Path) -> tuple[dict, dict]:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return header, header.pop("__metadata__", None) or {}


def _modules(tensors: dict, budget: int) -> dict[str, tuple[str, list[int]]]:
    """Whole modules (every tensor of a name prefix) of a template, taken evenly across its
    name order (text encoders and UNet, attention and convolutions), until about ``budget``
    bytes of tensor data: a valid add-on of the same kind and base, only smaller."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(tensors):
        groups[key.split(".", 1)[0]].append(key)
    modules = list(groups.values())
    stride = 7  # coprime with the module count of every template, so every module comes up
    order = [modules[(i * stride) % len(modules)] for i in range(len(modules))]
    out: dict[str, tuple[str, list[int]]] = {}
    used = 0
    for keys in order:
        for key in keys:
            entry = tensors[key]
            out[key] = (entry["dtype"], entry["shape"])
            count = 1
            for dim in entry["shape"]:
                count *= dim
            used += count * DTYPE_BYTES[entry["dtype"]]
        if used >= budget:
            break
    return out


def write_addon(
    path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict, rng: random.Random
) -> None:
    """A safetensors file of ``tensors`` (random bytes) and ``metadata``."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for key, (dtype, shape) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        size = count * DTYPE_BYTES[dtype]
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + rng.randbytes(offset))


def _kohya_metadata(base: dict, name: str, rng: random.Random) -> dict:
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in base.items()}
    words = rng.sample(WORDS, 3) + [name]
    meta["ss_output_name"] = name
    meta["ss_tag_frequency"] = json.dumps({"1_" + name: {w: rng.randint(1, 40) for w in words}})
    return meta


def build_library(root: Path, files: int, seed: int = 0, budget: int = 48_000) -> list[Path]:
    """``files`` add-ons under ``root/a1111`` and ``root/comfyui`` (one in 20 is in both, the
    same bytes; one in 10 has a ``.civitai.info`` with trained words). Returns every path."""
    rng = random.Random(seed)
    kohya = json.loads(KOHYA_METADATA.read_text())
    shapes = []
    for label, template, kind in _templates():
        tensors, meta = _header(template)
        shapes.append((label, _modules(tensors, budget), meta, kind))
    folders = {
        ("a1111", "lora"): "a1111/models/Lora",
        ("a1111", "embedding"): "a1111/embeddings",
        ("comfyui", "lora"): "comfyui/models/loras",
        ("comfyui", "embedding"): "comfyui/models/embeddings",
    }
    paths = []
    for i in range(files):
        label, tensors, meta, kind = shapes[i % len(shapes)]
        name = f"{WORDS[i % len(WORDS)]}_{label}_{i:05d}"
        ui = "a1111" if i % 2 == 0 else "comfyui"
        folder = root / folders[(ui, kind)] / f"set{i % 50:02d}"
        path = folder / f"{name}.safetensors"
        if kind == "lora":
            meta = _kohya_metadata(kohya, name, rng) | {
                k: v for k, v in meta.items() if k.startswith("ss_network")
            }
        write_addon(path, tensors, meta, rng)
        paths.append(path)
        if i % 10 == 3:
            info = {"id": 1000 + i, "modelId": i, "trainedWords": [f"trig{i}", WORDS[i % 10]]}
            path.with_name(f"{name}.civitai.info").write_text(json.dumps(info))
        if i % 20 == 7:
            other = "comfyui" if ui == "a1111" else "a1111"
            copy = root / folders[(other, kind)] / "shared" / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
            os.utime(copy, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
            paths.append(copy)
    return paths
