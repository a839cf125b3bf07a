"""`hub identify` at library scale (issue 15) against the loopback Civitai: a handful of
requests for 1,000 files, resumable after a kill, cached "not found", sizes verified, AutoV3
matches only suggested, and everything answerable offline afterwards."""

from __future__ import annotations

import json
import os
import signal
import struct
import time

import numpy as np
import pytest
from fake_sites import Hosted
from safetensors.numpy import save

FILES, HITS, PER_MODEL = 1000, 300, 10


def tiny(n: int) -> bytes:
    return save({"w": np.full((4,), n, dtype=np.float32)}, metadata={"n": str(n)})


def hosted(i: int, data: bytes, **kw) -> Hosted:
    return Hosted(
        900 + i // PER_MODEL,
        9000 + i,
        90000 + i,
        data,
        f"f{i}.safetensors",
        f"Model {i // PER_MODEL}",
        base_model="SD 1.5",
        version_name=f"v{i}",
        **kw,
    )


def make_library(hub, site, folder, files: int, hits: int) -> None:
    """``files`` registered files; the site knows the first ``hits`` (10 versions a model)."""
    folder.mkdir()
    for i in range(files):
        data = tiny(i)
        (folder / f"f{i:04d}.safetensors").write_bytes(data)
        if i < hits:
            site.add(hosted(i, data))
    hub("scan", folder)


@pytest.fixture
def library(hub, site, tmp_path):
    """1,000 registered files; the site knows 300 of them (30 models)."""
    make_library(hub, site, tmp_path / "lib", FILES, HITS)


@pytest.fixture
def small_library(hub, site, tmp_path):
    """100 registered files; the site knows 30 of them."""
    make_library(hub, site, tmp_path / "lib", 100, 30)


def posts(site) -> list[dict]:
    return [r for r in site.api_requests if "body" in r]


def test_a_handful_of_requests_then_only_what_is_missing(hub, site, library):
    site.api_429 = 1  # the edge throttles the first request: retried after Retry-After
    report = hub("identify", "--json").json()
    assert len(report["matched"]) == HITS and len(report["unknown"]) == FILES - HITS
    assert report["requests"] <= 3 and len(site.api_requests) <= 4  # + the retried 429
    assert len(posts(site)[0]["body"]) == FILES
    art = hub("show", "f0007", "--json").json()
    assert art["source"]["model_id"] == 900 and art["source"]["version_id"] == 9007
    assert art["family"] == "SD 1.5"
    before = len(site.api_requests)
    again = hub("identify", "--json").json()  # hits stored, "not found" cached for a week
    assert len(again["matched"]) == HITS and len(site.api_requests) == before
    hub("identify", "--refresh", "--json")
    assert len(posts(site)[-1]["body"]) == FILES


def test_resumes_after_a_kill(hub, site, small_library):
    site.stall_models = 1
    proc = hub.popen("identify", "--json")
    deadline = time.time() + 60
    while not any("ids=" in r["path"] for r in site.api_requests) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    report = hub("identify", "--json").json()
    assert len(report["matched"]) == 30
    second = posts(site)[-1]["body"]
    assert len(posts(site)) == 2 and len(second) == 30  # the misses were kept as such


def test_sizes_are_verified(hub, site, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    exact, off = tiny(1), tiny(2)
    (folder / "a.safetensors").write_bytes(exact)
    (folder / "b.safetensors").write_bytes(off)
    site.add(hosted(1, exact, size_kb=round(len(exact) / 1024)))  # rounded: within 1 KiB
    site.add(hosted(2, off, size_kb=len(off) / 1024 + 2))  # 2 KiB off: not this file
    hub("scan", folder)
    report = hub("identify", "--json").json()
    assert [m["name"] for m in report["matched"]] == ["a"]
    assert report["notes"] == [
        f"{folder / 'b.safetensors'}: same SHA-256 but Civitai lists another size"
    ]
    assert hub("show", "b", "--json").json()["source"]["name"] == "local"


def edit_header(data: bytes, extra: dict[str, str]) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = {**(header.get("__metadata__") or {}), **extra}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_edited_headers_get_autov3_suggestions_only(hub, site, models, tmp_path):
    original = models["kohya-sd1"].read_bytes()
    site.add(hosted(5, original, model_type="LORA"))
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "signed.safetensors").write_bytes(
        edit_header(original, {"ssmd_display_name": "My ink"})
    )
    (folder / "plain.safetensors").write_bytes(edit_header(original, {"note": "no sign"}))
    hub("scan", folder)
    report = hub("identify", "--json").json()
    assert report["matched"] == []
    [hint] = report["suggestions"]
    assert hint["name"] == "signed" and hint["ref"] == "civitai:900@9005"
    singles = [r for r in site.api_requests if "/by-hash/" in r["path"] and "body" not in r]
    assert len(singles) == 1  # only the file with the editor's sign was asked
    assert hub("show", "signed", "--json").json()["source"]["name"] == "local"
    named = hub("identify", "plain", "--json").json()  # named on the command line: asked
    assert named["suggestions"][0]["name"] == "plain"


def test_offline_afterwards(hub, site, small_library):
    hub("identify")
    hub.env["HUB_CIVITAI_URL"] = "http://127.0.0.1:9"  # nothing listens there
    report = hub("identify", "--offline", "--json").json()
    assert len(report["matched"]) == 30 and len(report["unknown"]) == 70
    assert report["requests"] == 0
    art = hub("show", "f0012", "--json").json()
    assert art["source"]["version_id"] == 9012 and art["family"] == "SD 1.5"
    assert len(hub("list", "--family", "SD 1.5", "--json").json()) == 30
