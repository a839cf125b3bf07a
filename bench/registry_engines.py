"""The registry on SQLite and on PostgreSQL side by side, 100,000 artifacts each, in one run:
`hub search WORD` and `hub list --kind lora --json` (whole process, interpreter start
included), and `hub serve --workers 2` requests per second for search pages and bulk by-hash
(100 hashes a request). Targets: search under 0.3 s on both engines; serve at least 200
search requests/s. The PostgreSQL server is started here as the tests start theirs
(tests/pg.py: initdb + pg_ctl in a temporary folder).

Both engines hold the same rows, each with a location on this machine: a tiny file in one
shared store (the PostgreSQL home is the SQLite one with HUB_DATABASE_URL set), so `hub
serve` checks and returns full pages. Byte-code is compiled first, as an install does.

    python bench/registry_engines.py [--count 100000] [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import requests  # noqa: E402
from pg import start_server  # noqa: E402
from registry import WORDS, populate  # noqa: E402

from hub.serve import background  # noqa: E402


def populate_postgres(url: str, count: int, folder: str) -> None:
    """The same rows as bench/registry.py's SQLite ones, by COPY, then the tsvector index
    computed by the server from the same words, and their locations."""
    import psycopg

    from hub.registry.db import Database, default_machine

    Database(url).ensure_schema()
    rng = random.Random(7)
    columns = (
        "id, kind, name, base, format, path, in_store, size, mtime_ns, inode, xxh3_128, sha256, "
        "hash_status, source, trained_words, description, kind_locked, base_locked, created_at, "
        "updated_at"
    )
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        with con.cursor() as cur, cur.copy(f"COPY artifact ({columns}) FROM STDIN") as copy:
            for i in range(1, count + 1):
                words = rng.sample(WORDS, 3)
                name = f"{words[0]}-{words[1]}-{i}"
                h = f"{rng.getrandbits(128):032x}"
                kind = rng.choice(["lora", "checkpoint", "embedding"])
                copy.write_row(
                    (i, kind, name, rng.choice(["sd1", "sdxl"]), "safetensors")
                    + (f"{folder}/{name}.safetensors", False, 1000 + i, i, i, h, h + h, "ok")
                    + ("local", f'["{words[2]}"]', f"a {words[2]} style", False, False)
                    + ("2026-01-01 00:00:00+00", "2026-01-01 00:00:00+00")
                )
        con.execute("SELECT setval('artifact_id_seq', %s)", (count,))
        con.execute(
            "INSERT INTO tag (artifact_id, name, origin) "
            "SELECT id, trained_words::jsonb ->> 0, 'user' FROM artifact"
        )
        con.execute(
            "INSERT INTO artifact_search (artifact_id, doc) SELECT id, to_tsvector('simple', "
            "replace(name, '-', ' ') || ' ' || name || ' ' || (trained_words::jsonb ->> 0) "
            "|| ' ' || description || ' ' || (trained_words::jsonb ->> 0)) FROM artifact"
        )
        con.execute(
            "INSERT INTO location (artifact_id, path, machine, device, inode, size, mtime_ns, "
            "created_by_hub, seen_at) SELECT id, path, %s, 0, inode, size, mtime_ns, false, "
            "updated_at FROM artifact",
            (default_machine(),),
        )
        con.execute("ANALYZE")


def write_files(home: Path) -> None:
    """A tiny file at every row's path (the rows of both engines name the same ones)."""
    import sqlite3

    with sqlite3.connect(home / "registry.db") as con:
        paths = [r[0] for r in con.execute("SELECT path FROM artifact")]
    Path(paths[0]).parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        Path(path).write_bytes(b"bench")


def wall(cmd: list[str], env: dict[str, str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rate(request: callable, seconds: float, threads: int = 8) -> float:
    """Requests per second over ``seconds`` with ``threads`` clients."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        session = requests.Session()
        while time.perf_counter() < stop:
            request(session).raise_for_status()
            done[n] += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / seconds


def measure_engine(env: dict[str, str], cwd: Path, hashes: list[str], args) -> dict[str, float]:
    hub = [sys.executable, "-m", "hub"]
    out = {
        "search": wall([*hub, "search", "pixel"], env, args.rounds),
        "list": wall([*hub, "list", "--kind", "lora", "--json"], env, args.rounds),
    }
    with background(env, cwd, "--workers", "2") as url:
        page = requests.get(f"{url}/api/v1/models", params={"query": "pixel"}, timeout=30)
        out["items"] = len(page.json()["items"])  # a full page: the files are checked, present
        words = iter(WORDS * 10_000)
        out["serve search"] = rate(
            lambda s: s.get(
                f"{url}/api/v1/models", params={"query": next(words), "limit": 100}, timeout=30
            ),
            args.seconds,
        )
        out["serve by-hash"] = rate(
            lambda s: s.post(f"{url}/api/v1/model-versions/by-hash", json=hashes, timeout=30),
            args.seconds,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-engines-"))
    skip = ("HUB_", "PYTHONDONTWRITEBYTECODE")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    server = start_server()
    try:
        sqlite_home = work / "sqlite-home"
        sqlite_home.mkdir()
        folder = str(sqlite_home / "models" / "Lora")
        populate(sqlite_home, args.count, folder)
        write_files(sqlite_home)
        pg_url = server.url(server.new_database())
        populate_postgres(pg_url, args.count, folder)
        import compileall

        compileall.compile_dir(Path(__file__).parent.parent / "hub", quiet=1)
        rng = random.Random(7)
        hashes = []
        for _ in range(args.count):  # the rows' SHA-256 as both populations drew them
            rng.sample(WORDS, 3)
            h = f"{rng.getrandbits(128):032x}"
            rng.choice([0, 1, 2])
            rng.choice([0, 1])
            hashes.append(h + h)
        wanted = hashes[:: max(1, args.count // 100)][:100]
        engines = {
            "SQLite": {**base_env, "HUB_HOME": str(sqlite_home)},
            "PostgreSQL": {**base_env, "HUB_HOME": str(sqlite_home), "HUB_DATABASE_URL": pg_url},
        }
        figures = {name: measure_engine(env, work, wanted, args) for name, env in engines.items()}
    finally:
        server.stop("immediate")
        shutil.rmtree(server.folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("hub search pixel (s, whole process)", "search", "< 0.3"),
        ("hub list --kind lora --json (s, whole process)", "list", ""),
        ("serve --workers 2: search pages (req/s)", "serve search", ">= 200"),
        ("serve --workers 2: by-hash, 100 hashes (req/s)", "serve by-hash", ""),
        ("serve: items on a search page (of 100)", "items", ""),
    ]
    print(f"{args.count:,} artifacts per engine\n")
    print(f"{'measure':<50} {'SQLite':>10} {'PostgreSQL':>11} {'target':>8}")
    for label, key, target in rows:
        s, p = figures["SQLite"][key], figures["PostgreSQL"][key]
        print(f"{label:<50} {s:>10.3f} {p:>11.3f} {target:>8}")


if __name__ == "__main__":
    main()
