"""Pickle reading and pickle -> safetensors conversion, for one or more source trees
(``--tree DIR``, repeatable; default: this checkout), alternating trees in one run:

- ``load sd15.ckpt``: ``safeload.load`` + ``tensor_refs`` of an SD1.5-shaped Lightning
  checkpoint (real key names, shapes and pickle layout; every storage one element wide, so
  the time is the interpreter's and the zip checks'); median of many loads, in-process;
- ``load train-state.pt``: the same for a pickle of about 2.5 million opcodes (a training
  log: lists of floats, ints and strings), which stresses the opcode dispatch;
- ``hub convert``: `hub convert REF` of a full-size SD1.5-shaped fp16 ``.ckpt`` (about 2 GB,
  random weights) to safetensors, hash and register included; wall time by /usr/bin/time.

    python bench/pickle_load.py [--tree DIR ...] [--rounds 3] [--no-convert]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fixtures import sd15_ldm_shapes
from timing import measure

HERE = Path(__file__).resolve().parent

LOAD_TIMES = """
import statistics, sys, time
from hub.core import safeload
path, repeat = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(repeat):
    t = time.perf_counter()
    loaded = safeload.load(path)
    loaded.tensor_refs()
    times.append(time.perf_counter() - t)
    loaded.close()  # not `with`: the trees compared may predate it
print(statistics.median(times))
"""


def build_inputs(work: Path, full: bool) -> None:
    """``sd15.ckpt`` (one-element storages), ``train-state.pt`` and, if ``full``,
    ``models/sd15-fp16.ckpt`` (real-size random fp16 weights)."""
    import torch

    shapes = sd15_ldm_shapes()
    wide = {k: torch.zeros(1).expand(s) for k, s in shapes.items()}
    torch.save({"epoch": 6, "global_step": 470000, "state_dict": wide}, work / "sd15.ckpt")
    log = {
        "loss": [0.1 + i * 1e-6 for i in range(300_000)],
        "step": list(range(300_000)),
        "tags": [f"tag-{i % 5000}" for i in range(300_000)],
        "per_key": {f"key.{i}": [i, float(i), str(i)] for i in range(100_000)},
    }
    torch.save(log, work / "train-state.pt")
    if full:
        gen = torch.Generator().manual_seed(0)
        state = {k: (torch.randn(s, generator=gen) * 0.02).half() for k, s in shapes.items()}
        (work / "models").mkdir()
        torch.save({"state_dict": state}, work / "models" / "sd15-fp16.ckpt")


def _load_median(tree: Path, path: Path, repeat: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_TIMES, str(path), str(repeat)],
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-convert", action="store_true")
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree or [HERE.parent]]
    work = Path(tempfile.mkdtemp(prefix="hub-bench-pickle-"))
    try:
        build_inputs(work, full=not args.no_convert)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        if not args.no_convert:
            subprocess.run(
                ["cat", str(work / "models" / "sd15-fp16.ckpt")], stdout=subprocess.DEVNULL
            )
        results: dict[tuple[Path, str], list[float]] = {}
        for i in range(args.rounds):
            for tree in trees:
                for name, repeat in (("sd15.ckpt", 20), ("train-state.pt", 3)):
                    t = _load_median(tree, work / name, repeat)
                    results.setdefault((tree, f"load {name}"), []).append(t)
                if args.no_convert:
                    continue
                home = work / f"home-{trees.index(tree)}"
                tree_env = {**env, "HUB_HOME": str(home), "PYTHONPATH": str(tree)}
                if i == 0:
                    subprocess.run(
                        [sys.executable, "-m", "hub", "scan", str(work / "models"), "-q"],
                        env=tree_env,
                        check=True,
                        stderr=subprocess.DEVNULL,
                    )
                cmd = [sys.executable, "-m", "hub", "convert", "sd15-fp16", "--name", f"st-{i}"]
                wall, _ = measure([*cmd, "-q"], tree_env)
                results.setdefault((tree, "hub convert .ckpt -> safetensors"), []).append(wall)
                for stored in (home / "models").rglob("st-*.safetensors"):
                    stored.unlink()  # keep the disk use bounded
        print(f"{args.rounds} rounds, trees alternating; seconds, median over rounds")
        print(f"{'tree':<32}{'measure':<40}{'median s':>10}{'min s':>10}")
        for (tree, what), times in results.items():
            med, low = statistics.median(times), min(times)
            print(f"{str(tree)[-31:]:<32}{what:<40}{med:>10.4f}{low:>10.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
