"""Registry speed: an incremental `hub scan` of 1,000 unchanged files, `hub list --json` on
10,000 artifacts (whole process), and full-text search over 100,000 artifacts (in process).
Targets: under 0.5 s, under 0.3 s, under 50 ms. Baseline for the whole-process figures: the
bare Python interpreter start (`python -c pass`) in the same run.

    python bench/registry.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "pixel",
    "art",
    "watercolor",
    "anime",
    "castle",
    "portrait",
    "landscape",
    "neon",
    "retro",
    "cyberpunk",
    "oil",
    "sketch",
    "ink",
    "dragon",
    "forest",
    "ocean",
    "glow",
    "soft",
    "sharp",
    "dream",
    "noir",
]


def tiny_safetensors(path: Path, seed: int) -> None:
    """A valid 1-vector sd1 embedding with distinct bytes."""
    data = random.Random(seed).randbytes(768 * 4)
    header = json.dumps(
        {"emb_params": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, len(data)]}}
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def populate(home: Path, count: int, folder: str = "/models") -> None:
    """Insert ``count`` artifact rows (with tags, search entries and locations) as the
    registry stores them, in bulk; their paths are in ``folder``."""
    from hub.registry import writes
    from hub.registry.db import Database

    db = Database(f"sqlite:///{home / 'registry.db'}")
    db.ensure_schema()
    rng = random.Random(7)
    with db.session() as session:
        now = writes.utcnow(session)
    rows, tags, fts = [], [], []
    for i in range(1, count + 1):
        words = rng.sample(WORDS, 3)
        name = f"{words[0]}-{words[1]}-{i}"
        h = f"{rng.getrandbits(128):032x}"
        rows.append(
            dict(
                id=i,
                kind=rng.choice(["lora", "checkpoint", "embedding"]),
                name=name,
                base=rng.choice(["sd1", "sdxl"]),
                format="safetensors",
                path=f"{folder}/{name}.safetensors",
                in_store=False,
                size=1000 + i,
                mtime_ns=i,
                inode=i,
                xxh3_128=h,
                sha256=h + h,
                hash_status="ok",
                source="local",
                trained_words=json.dumps([words[2]]),
                description=f"a {words[2]} style",
                kind_locked=False,
                base_locked=False,
                created_at=now,
                updated_at=now,
            )
        )
        tags.append(dict(artifact_id=i, name=words[2], origin="user"))
        fts.append(
            dict(
                id=i,
                name=name.replace("-", " ") + " " + name,
                tags=words[2],
                description=f"a {words[2]} style",
                words=words[2],
            )
        )
    columns = list(writes.ARTIFACT_DEFAULTS | rows[0])
    with sqlite3.connect(home / "registry.db") as con:
        con.executemany(
            f"INSERT INTO artifact ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})",
            [writes.ARTIFACT_DEFAULTS | r for r in rows],
        )
        con.executemany(
            "INSERT INTO tag (artifact_id, name, origin) VALUES (:artifact_id, :name, :origin)",
            tags,
        )
        con.executemany(
            "INSERT INTO artifact_fts(rowid, name, tags, description, "
            "trained_words) VALUES (:id, :name, :tags, :description, :words)",
            fts,
        )
        con.execute(  # each row's path a location on this machine, as imports record it
            "INSERT INTO location (artifact_id, path, machine, device, inode, size, mtime_ns, "
            "created_by_hub, seen_at) SELECT id, path, ?, 0, inode, size, mtime_ns, 0, "
            "updated_at FROM artifact",
            (db.machine,),
        )


def wall(cmd: list[str], env: dict[str, str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-reg-"))
    hub = [sys.executable, "-m", "hub"]
    results = []
    try:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        bare = wall([sys.executable, "-c", "pass"], base_env, args.rounds)
        results.append(("python -c pass (interpreter start)", bare, None))

        tree = work / "tree"
        for i in range(1000):
            folder = tree / f"d{i % 20}"
            folder.mkdir(parents=True, exist_ok=True)
            tiny_safetensors(folder / f"e{i}.safetensors", i)
        env = {**base_env, "HUB_HOME": str(work / "scan-home")}
        subprocess.run(
            [*hub, "scan", str(tree), "-q"], check=True, env=env, stderr=subprocess.DEVNULL
        )
        results.append(
            (
                "hub scan (1,000 unchanged files)",
                wall([*hub, "scan", str(tree), "-q"], env, args.rounds),
                0.5,
            )
        )

        home10k = work / "home10k"
        home10k.mkdir()
        populate(home10k, 10_000)
        env = {**base_env, "HUB_HOME": str(home10k)}
        results.append(
            (
                "hub list --json (10,000 artifacts)",
                wall([*hub, "list", "--json"], env, args.rounds),
                0.3,
            )
        )

        home100k = work / "home100k"
        home100k.mkdir()
        populate(home100k, 100_000)
        from hub.registry.db import Database
        from hub.registry.queries import search

        db = Database(f"sqlite:///{home100k / 'registry.db'}")
        queries = [
            ("pixel", {}),
            ("water", {"kind": "lora"}),
            ("neon castle", {}),
            ("dragon", {"tags": ["soft"]}),
            ("retro", {"base": "sdxl"}),
        ]
        with db.reader() as reader:
            for q, kw in queries:  # warm
                search(reader, q, **kw)
            times = []
            for _ in range(args.rounds):
                for q, kw in queries:
                    start = time.perf_counter()
                    search(reader, q, **kw)
                    times.append(time.perf_counter() - start)
        results.append(
            ("search (100,000 artifacts, 5 queries, in process)", statistics.median(times), 0.05)
        )
        results.append(("  worst search of those", max(times), 0.05))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'measure':<52}{'median s':>10}{'target s':>10}  verdict")
    for label, value, target in results:
        verdict = "" if target is None else ("met" if value < target else "NOT met")
        tgt = "" if target is None else f"{target:.2f}"
        print(f"{label:<52}{value:>10.3f}{tgt:>10}  {verdict}")


if __name__ == "__main__":
    main()
