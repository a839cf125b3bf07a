"""Real LoRA headers (realdata/lora_headers, with provenance) given their bytes: the probes
must take them for what the files are (both are SD1.5 LoRAs by their repositories)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

HEADERS = Path(__file__).parent / "realdata" / "lora_headers"


def _file_from_header(header_json: Path, out: Path) -> Path:
    """A safetensors file with exactly that header and zero bytes for its tensors."""
    header = json.loads(header_json.read_text())
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(end))
    return out


@pytest.mark.parametrize(
    "name",
    ["diffusers_attnproc_pokemon.sd15", "diffusers_peft_converted_brainmri.sd15"],
)
def test_real_diffusers_lora_headers_are_sd1_loras(hub, tmp_path, name):
    path = _file_from_header(HEADERS / f"{name}.header.json", tmp_path / f"{name}.safetensors")
    shown = hub("show", path, "--json").json()
    assert (shown["kind"], shown["base"], shown["algo"]) == ("lora", "sd1", "lora")
