"""Identification and update checks at library scale: `hub identify` and `hub outdated` over
5,000 registered files against the loopback Civitai (tests/fake_sites.py, the real answer
shapes), beside the baseline other tools use: one `GET /model-versions/by-hash/:sha256` per
file, and one `GET /models/:id` per model, in one run against the same server. The site
knows 4,000 of the files (800 models of 5 held versions; each model has a 6th, newer one).
Targets: at most 60 requests and 10 s for either command.

    python bench/identify_outdated.py [--files 5000] [--dir FOLDER]

The library and home are made in a temporary folder under ``--dir`` (default: the current
folder; a slow /tmp would be measured instead of sd-hub).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fake_sites import FakeSite, Hosted  # noqa: E402

VERSIONS = 5  # held per model; the site has one more


def tiny(n: int) -> bytes:
    return save({"w": np.full((4,), n, dtype=np.float32)}, metadata={"n": str(n)})


def build(home: Path, folder: Path, site: FakeSite, files: int) -> list[str]:
    """Write and register ``files`` small files (in one transaction, not through a scan:
    the scan is not what is measured); the site hosts four in five. Returns the SHA-256s."""
    from hub.context import Context
    from hub.core.hashing import hash_file
    from hub.registry import writes

    ctx = Context.load(home=str(home))
    known = files * 4 // 5
    shas = []
    rows = []
    for i in range(files):
        path = folder / f"f{i:05d}.safetensors"
        data = tiny(i)
        path.write_bytes(data)
        hashes, stat = hash_file(path, autov3=False)
        shas.append(hashes.sha256)
        rows.append(
            {
                "kind": "lora",
                "name": path.stem,
                "base": "sd1",
                "format": "safetensors",
                "path": str(path),
                "size": stat.size,
                "mtime_ns": stat.mtime_ns,
                "inode": stat.inode,
                "xxh3_128": hashes.xxh3_128,
                "sha256": hashes.sha256,
                "autov1": hashes.autov1,
            }
        )
        if i < known:
            model, version = 10_000 + i // VERSIONS, 100_000 + i
            site.add(Hosted(model, version, version, data, path.name, f"M{model}"))
            if i % VERSIONS == VERSIONS - 1:  # the newer version nobody holds
                newer = 500_000 + i
                site.add(Hosted(model, newer, newer, tiny(10**7 + i), "new.safetensors", "M"))
    with ctx.db.session() as session:
        for row in rows:
            writes.insert(session, row, [])
    ctx.db.dispose()
    return shas


def run_hub(home: Path, site: FakeSite, *args: str) -> tuple[float, int]:
    """(wall seconds, API requests) of one `hub` command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {"HUB_HOME": str(home), "HUB_CIVITAI_URL": site.origin, "PYTHONPATH": str(ROOT)}
    before = len(site.api_requests)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return wall, len(site.api_requests) - before


def baseline(site: FakeSite, shas: list[str]) -> tuple[tuple[float, int], tuple[float, int]]:
    """One GET by-hash per file, then one GET /models/:id per model found."""
    import requests

    http = requests.Session()
    start = time.perf_counter()
    model_ids = set()
    for sha in shas:
        resp = http.get(f"{site.origin}/api/v1/model-versions/by-hash/{sha.upper()}")
        if resp.status_code == 200:
            model_ids.add(resp.json()["modelId"])
    identify = (time.perf_counter() - start, len(shas))
    start = time.perf_counter()
    for model_id in sorted(model_ids):
        http.get(f"{site.origin}/api/v1/models/{model_id}").raise_for_status()
    return identify, (time.perf_counter() - start, len(model_ids))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    args = parser.parse_args()
    site = FakeSite()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "lib"
        folder.mkdir()
        shas = build(home, folder, site, args.files)
        other = Path(tmp) / "home2"
        shutil.copytree(home, other)  # the same registry, for a run without sidecars
        rows = [("hub identify", *run_hub(home, site, "identify", "--json", "-q"))]
        rows += [("hub outdated", *run_hub(home, site, "outdated", "--json"))]
        rows += [("hub identify (again)", *run_hub(home, site, "identify", "--json", "-q"))]
        rows += [
            (
                "hub identify --no-sidecars",
                *run_hub(other, site, "identify", "--no-sidecars", "--json", "-q"),
            )
        ]
        (b_ident, b_out) = baseline(site, shas)
        rows += [
            ("baseline: GET by-hash per file", *b_ident),
            ("baseline: GET /models/:id per model", *b_out),
        ]
    site.close()
    print(f"{args.files} registered files, {args.files * 4 // 5} known to the site")
    print(f"{'what':<38} {'requests':>9} {'wall s':>8}")
    for name, wall, requests in rows:
        print(f"{name:<38} {requests:>9} {wall:>8.2f}")
    print("targets: hub identify and hub outdated at most 60 requests and 10 s each")


if __name__ == "__main__":
    main()
