"""Hashing speed: `hub scan` of a folder holding one 2 GB safetensors file (xxh3-128, SHA-256,
AutoV1 and AutoV3, identification and the registry write included) against `sha256sum` of
the same file, alternating in one run. Target: hub at most 1.1x sha256sum's wall time.

    python bench/hash_scan.py [--size-mb 2048] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_file(path: Path, size: int) -> None:
    header = json.dumps(
        {"blob": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(64 << 20)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-hash-"))
    try:
        folder = work / "models"
        folder.mkdir()
        big = folder / "big.safetensors"
        make_file(big, args.size_mb << 20)
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm cache
        hub_times, sha_times = [], []
        for i in range(args.rounds):
            sha_times.append(timed(["sha256sum", str(big)]))
            env = {**os.environ, "HUB_HOME": str(work / f"home{i}")}
            hub_times.append(timed([sys.executable, "-m", "hub", "scan", str(folder), "-q"], env))
        sha, hub = statistics.median(sha_times), statistics.median(hub_times)
        size_mb = big.stat().st_size / (1 << 20)
        print(
            f"file: {size_mb:.0f} MiB safetensors, page cache warm, {args.rounds} rounds "
            "(alternating), medians"
        )
        print(f"{'command':<44}{'wall s':>9}{'MiB/s':>9}{'ratio':>8}")
        print(f"{'sha256sum FILE':<44}{sha:>9.2f}{size_mb / sha:>9.0f}{1.0:>8.2f}")
        print(
            f"{'hub scan DIR (xxh3+sha256+autov1+autov3)':<44}{hub:>9.2f}"
            f"{size_mb / hub:>9.0f}{hub / sha:>8.2f}"
        )
        print(f"target: hub <= 1.10x sha256sum -> {'met' if hub <= 1.1 * sha else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
