"""Start-up of the light commands: `hub list --json` on a registry of ~200 artifacts and
`hub --help`, whole process (interpreter start included), for this tree against the tree at a
git revision (default e3dd996, main before the plugin round), alternating in one run. Both
read the same registry: built once by the base tree's `hub scan` of 200 tiny embeddings and
copied for this tree, which upgrades its copy during the untimed warm-up. Target: this tree
no slower than the base.

    python bench/startup.py [--rounds 9] [--base-rev e3dd996] [--base-tree /tmp/startup-base]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from registry import tiny_safetensors
from timing import run_timed

HERE = Path(__file__).resolve().parents[1]
COMMANDS = {"hub list --json": ["list", "--json"], "hub --help": ["--help"]}


def base_tree(path: Path, rev: str) -> Path:
    """A checkout of ``rev`` at ``path`` (a git worktree of this repository), made if absent."""
    if not (path / "hub" / "__init__.py").is_file():
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def tree_env(tree: Path, home: Path) -> dict[str, str]:
    """The environment that runs ``hub`` from ``tree`` on the registry under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return env | {"PYTHONPATH": str(tree), "HUB_HOME": str(home)}


def hub(env: dict[str, str], *args: str) -> str:
    """Run ``hub`` once; its stdout."""
    cmd = [sys.executable, "-m", "hub", *args]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def build_registry(work: Path, env: dict[str, str], count: int) -> None:
    """``count`` distinct tiny embeddings scanned into the registry ``env`` names."""
    models = work / "models"
    models.mkdir()
    for i in range(count):
        tiny_safetensors(models / f"emb-{i:03d}.safetensors", seed=i)
    hub(env, "scan", str(models), "-q")


def copy_registry(source: Path, target: Path) -> None:
    """A copy of an SQLite registry, rows still in its write-ahead log included."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--base-rev", default="e3dd996")
    ap.add_argument("--base-tree", type=Path, default=Path("/tmp/startup-base"))
    args = ap.parse_args()
    trees = {args.base_rev: base_tree(args.base_tree, args.base_rev), "this tree": HERE}
    work = Path(tempfile.mkdtemp(prefix="hub-bench-startup-"))
    try:
        envs = {label: tree_env(tree, work / label) for label, tree in trees.items()}
        build_registry(work, envs[args.base_rev], args.rows)
        (work / "this tree").mkdir()
        copy_registry(work / args.base_rev / "registry.db", work / "this tree" / "registry.db")
        for label, env in envs.items():  # warm-up: bytecode caches, this tree's migration
            for cmd in COMMANDS.values():
                hub(env, *cmd)
            rows = len(json.loads(hub(env, "list", "--json")))
            if rows != args.rows:
                raise SystemExit(f"{label}: `hub list` shows {rows} rows, not {args.rows}")
        times: dict[tuple[str, str], list[float]] = {}
        labels = list(envs)
        for r in range(args.rounds):
            for name, cmd in COMMANDS.items():
                for label in labels if r % 2 == 0 else reversed(labels):
                    wall, _ = run_timed([sys.executable, "-m", "hub", *cmd], envs[label])
                    times.setdefault((name, label), []).append(wall)
        print_table(times, args.base_rev, args.rounds, args.rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(times: dict[tuple[str, str], list[float]], base: str, rounds: int, rows: int):
    """One row per command: median and best wall time of each tree, and their ratio."""
    print(f"median of {rounds} runs each, alternating; registry of {rows} artifacts")
    print(f"{'command':<18}{base + ' median':>16}{'this median':>14}{'ratio':>8}{'best b/t':>16}")
    for name in COMMANDS:
        b, t = times[(name, base)], times[(name, "this tree")]
        mb, mt = statistics.median(b), statistics.median(t)
        best = f"{min(b):.3f}/{min(t):.3f}"
        print(f"{name:<18}{mb:>14.3f} s{mt:>12.3f} s{mt / mb:>8.2f}{best:>16}")


if __name__ == "__main__":
    main()
