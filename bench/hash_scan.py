"""Hashing speed: `hub scan` of a folder holding one 1 GiB safetensors checkpoint-sized file
(xxh3-128, SHA-256 and AutoV1 in one pass, identification and the registry write included;
AutoV3 is left for when something asks) against `openssl dgst -sha256` of the same file,
alternating in one run, each scan into an existing registry of its own. Target: hub at most
1.15x openssl's wall time. CPU time (user + system, all threads) is printed beside, as a
check on how much of a wall time was spent waiting for a shared CPU.

    python bench/hash_scan.py [--size-mb 1024] [--rounds 5]
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
from pathlib import Path

from timing import run_timed


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-hash-"))
    try:
        folder = work / "models"
        folder.mkdir()
        big = folder / "big.safetensors"
        make_file(big, args.size_mb << 20)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules are cached
        hub = [sys.executable, "-m", "hub"]
        homes = []
        for i in range(args.rounds + 1):  # existing registries, as a user has one
            home = str(work / f"home{i}")
            subprocess.run([*hub, "--home", home, "list"], env=env, check=True, capture_output=True)
            homes.append(home)
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm cache
        run_timed([*hub, "--home", homes.pop(), "scan", str(folder), "-q"], env)  # untimed
        rows: dict[str, list[tuple[float, float]]] = {"openssl": [], "hub": []}
        for home in homes:
            rows["openssl"].append(run_timed(["openssl", "dgst", "-sha256", str(big)], env))
            rows["hub"].append(run_timed([*hub, "--home", home, "scan", str(folder), "-q"], env))
        size_mb = big.stat().st_size / (1 << 20)
        base = statistics.median(w for w, _ in rows["openssl"])
        base_cpu = statistics.median(c for _, c in rows["openssl"])
        print(
            f"file: {size_mb:.0f} MiB safetensors, page cache warm, {args.rounds} rounds "
            "(alternating), medians"
        )
        print(f"{'command':<44}{'wall s':>8}{'MiB/s':>8}{'ratio':>7}{'CPU s':>8}{'ratio':>7}")
        for label, key in (
            ("openssl dgst -sha256 FILE", "openssl"),
            ("hub scan DIR (xxh3+sha256+autov1)", "hub"),
        ):
            wall = statistics.median(w for w, _ in rows[key])
            cpu = statistics.median(c for _, c in rows[key])
            print(
                f"{label:<44}{wall:>8.2f}{size_mb / wall:>8.0f}{wall / base:>7.2f}"
                f"{cpu:>8.2f}{cpu / base_cpu:>7.2f}"
            )
        hub_wall = statistics.median(w for w, _ in rows["hub"])
        print(
            f"target: hub scan <= 1.15x openssl (wall) -> "
            f"{'met' if hub_wall <= 1.15 * base else 'NOT met'}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
