"""Scanning a large library: `hub scan` against the part A1111 plays on the same files.

A library of N add-on files (tests/addon_library.py: real kohya/LyCORIS headers and kohya
metadata, small tensors; one in 20 copied into the other UI's tree) is built once into a
cache folder. In one run, side by side:

- A1111's part, re-implemented from its public description in one process: for every
  file, the SHA-256 of the whole file and the SHA-256 of the bytes after the safetensors
  header (both read in 1 MiB blocks, as its ``calculate_sha256`` and
  ``addnet_hash_safetensors`` do), and its ``read_metadata_from_safetensors`` (the header's
  ``__metadata__``, string values that hold a JSON object decoded);
- `hub scan` of the library into an existing empty registry: time until every file is
  listed (all of its locations in the registry, read by another connection) and the whole
  scan, hashes included;
- a rescan of the unchanged library, `hub search WORD` and `hub list --json` (process start
  included), and the same two reads while another scan of the library is writing.

    python bench/scan_library.py [--files 30000] [--cache /work/benchcache/scan-library]

Targets (issue 14): listed < 30 s; full scan <= A1111's part; rescan < 2 s; search < 0.3 s
and list --json < 1.5 s at 30,000 rows; while a scan writes, < 0.6 s and < 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import run_timed

REPO = Path(__file__).resolve().parent.parent
BLOCK = 1 << 20


def a1111_full_sha256(path: str) -> str:
    """SHA-256 of the whole file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def a1111_addnet_hash(path: str) -> str:
    """SHA-256 of the bytes after the 8-byte length and the header it gives, 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        fh.seek(8 + length)
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def a1111_metadata(path: str) -> dict:
    """The header's ``__metadata__``; a string value starting with ``{`` is decoded as JSON
    when it parses."""
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(length))
    out = {}
    for key, value in (header.get("__metadata__") or {}).items():
        out[key] = value
        if isinstance(value, str) and value.startswith("{"):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(value)
    return out


def a1111_part(root: str) -> None:
    """Every safetensors file under ``root``: the three functions, in one process."""
    for folder, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            if name.endswith(".safetensors"):
                path = os.path.join(folder, name)
                a1111_full_sha256(path)
                a1111_addnet_hash(path)
                a1111_metadata(path)


def build(cache: Path, files: int) -> tuple[Path, int, int]:
    """The library of ``files`` add-ons (built once); returns (root, paths, bytes)."""
    root = cache / f"lib-{files}"
    if not root.is_dir():
        sys.path.insert(0, str(REPO / "tests"))
        from addon_library import build_library

        work = Path(tempfile.mkdtemp(prefix="lib-", dir=cache))
        build_library(work, files)
        work.rename(root)
    paths = [p for p in root.rglob("*.safetensors")]
    return root, len(paths), sum(p.stat().st_size for p in paths)


def hub_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hub", "--home", str(home), *args]


def timed_scan(
    home: Path, root: Path, paths: int, env: dict[str, str]
) -> tuple[float, float, float]:
    """(seconds until every path is listed, seconds for the whole scan, its CPU seconds)."""
    db = home / "registry.db"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        hub_cmd(home, "scan", str(root), "-q"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listed = None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    while proc.poll() is None:
        if listed is None:
            (count,) = con.execute("SELECT COUNT(*) FROM location").fetchone()
            if count >= paths:
                listed = time.perf_counter() - start
        time.sleep(0.05)
    total = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    con.close()
    if proc.returncode:
        raise SystemExit(f"hub scan failed ({proc.returncode})")
    return listed if listed is not None else total, total, cpu


def median_run(cmd: list[str], env: dict[str, str], rounds: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``rounds`` runs."""
    runs = [run_timed(cmd, env) for _ in range(rounds)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def reads_during_scan(
    root: Path, work: Path, paths: int, env: dict[str, str]
) -> tuple[float, float]:
    """search and list --json walls while a scan of the library writes its hashes."""
    home = work / "home-busy"
    run_timed(hub_cmd(home, "list"), env)
    proc = subprocess.Popen(
        hub_cmd(home, "scan", str(root), "-q"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    con = sqlite3.connect(f"file:{home / 'registry.db'}?mode=ro", uri=True, timeout=60)
    while (
        proc.poll() is None and con.execute("SELECT COUNT(*) FROM location").fetchone()[0] < paths
    ):
        time.sleep(0.05)
    con.close()
    search, listing = [], []
    while proc.poll() is None and len(listing) < 3:
        search.append(run_timed(hub_cmd(home, "search", "pixel"), env)[0])
        listing.append(run_timed(hub_cmd(home, "list", "--json"), env)[0])
    proc.wait()
    if not listing:
        return float("nan"), float("nan")
    return statistics.median(search), statistics.median(listing)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--cache", type=Path, default=Path("/work/benchcache/scan-library"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    root, paths, size = build(args.cache, args.files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    work = Path(tempfile.mkdtemp(prefix="hub-bench-scan-"))
    try:
        for path in root.rglob("*.safetensors"):  # page cache warm for every contestant
            path.read_bytes()
        peer = run_timed([sys.executable, __file__, "--a1111-part", str(root)], env)
        home = work / "home"
        run_timed(hub_cmd(home, "list"), env)  # an existing registry, as a user has one
        listed, full, full_cpu = timed_scan(home, root, paths, env)
        rescan = median_run(hub_cmd(home, "scan", str(root), "-q"), env)
        rows = len(
            json.loads(
                subprocess.run(
                    hub_cmd(home, "list", "--json"), env=env, capture_output=True, check=True
                ).stdout
            )
        )
        search = median_run(hub_cmd(home, "search", "pixel"), env)
        listing = median_run(hub_cmd(home, "list", "--json"), env)
        busy_search, busy_list = reads_during_scan(root, work, paths, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"library: {paths} files ({args.files} add-ons + copies in the other UI's tree), "
        f"{size / 2**30:.2f} GiB, page cache warm; {rows} rows; {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end (CPU s: user + system of the process and the "
        "children it waited for)"
    )
    nan = float("nan")
    print(f"{'measure':<52}{'wall s':>9}{'CPU s':>8}{'target (wall)':>22}")
    table = [
        ("A1111 part: sha256 + addnet hash + metadata, 1 proc", *peer, "(baseline)"),
        ("hub scan: every file listed (header pass)", listed, nan, "< 30 s"),
        ("hub scan: whole first scan, hashes included", full, full_cpu, f"<= {peer[0]:.2f}"),
        ("hub scan: rescan of the unchanged library", *rescan, "< 2 s"),
        ("hub search pixel", *search, "< 0.3 s"),
        ("hub list --json", *listing, "< 1.5 s"),
        ("hub search pixel, while a scan writes", busy_search, nan, "< 0.6 s"),
        ("hub list --json, while a scan writes", busy_list, nan, "< 2 s"),
    ]
    for label, wall, cpu, target in table:
        print(f"{label:<52}{wall:>9.2f}{cpu:>8.2f}{target:>22}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--a1111-part":
        a1111_part(sys.argv[2])
    else:
        main()
