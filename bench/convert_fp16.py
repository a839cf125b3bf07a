"""fp32 -> fp16 conversion of a full-size SD1.5-shaped single-file checkpoint (random weights,
real key names and shapes, about 4 GB): `hub convert REF --dtype fp16` against
`safetensors.torch.load_file` + `.half()` + `save_file`, alternating in one run; wall time and
peak RSS from /usr/bin/time -v. Targets: hub at most 1.0x the baseline's wall time and at most
0.25x its peak RSS.

    python bench/convert_fp16.py [--rounds 2]
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

BASELINE = """
import sys
from safetensors.torch import load_file, save_file
state = load_file(sys.argv[1])
save_file({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, sys.argv[2])
"""


def build_checkpoint(path: Path) -> None:
    """Write an SD1.5-shaped fp32 single-file checkpoint tensor by tensor."""
    import torch

    from hub.core.safetensors_io import TensorSpec, write_safetensors

    specs = [TensorSpec(k, "F32", shape) for k, shape in sd15_ldm_shapes().items()]
    gen = torch.Generator().manual_seed(0)
    write_safetensors(path, specs, lambda s: torch.randn(s.shape, generator=gen) * 0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-fp16-"))
    try:
        models = work / "models"
        models.mkdir()
        src = models / "sd15-fp32.safetensors"
        build_checkpoint(src)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
            "HUB_HOME": str(work / "home"),
        }
        subprocess.run(
            [sys.executable, "-m", "hub", "scan", str(models), "-q"],
            env=env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)
        base_runs, hub_runs = [], []
        for i in range(args.rounds):
            out = work / "baseline-fp16.safetensors"
            base_runs.append(measure([sys.executable, "-c", BASELINE, str(src), str(out)], env))
            out.unlink()
            hub_runs.append(
                measure(
                    [
                        sys.executable,
                        "-m",
                        "hub",
                        "convert",
                        "sd15-fp32",
                        "--dtype",
                        "fp16",
                        "--name",
                        f"fp16-{i}",
                        "-q",
                    ],
                    env,
                )
            )
            for stored in (work / "home" / "models").rglob("fp16-*.safetensors"):
                stored.unlink()  # keep the disk use bounded; the rows do not matter here
        size = src.stat().st_size / 2**30
        bw, br = statistics.median(t for t, _ in base_runs), max(r for _, r in base_runs)
        hw, hr = statistics.median(t for t, _ in hub_runs), max(r for _, r in hub_runs)
        print(
            f"input: {size:.2f} GiB fp32 SD1.5-shaped single file; {args.rounds} rounds "
            "alternating; wall = median, RSS = max"
        )
        print(f"{'command':<52}{'wall s':>8}{'peak RSS MiB':>14}{'wall x':>8}{'RSS x':>7}")
        print(
            f"{'load_file + .half() + save_file':<52}{bw:>8.1f}{br / 2**20:>14.0f}"
            f"{1:>8.2f}{1:>7.2f}"
        )
        print(
            f"{'hub convert REF --dtype fp16 (hash + register incl.)':<52}{hw:>8.1f}"
            f"{hr / 2**20:>14.0f}{hw / bw:>8.2f}{hr / br:>7.2f}"
        )
        print(
            f"targets: wall <= 1.0x -> {'met' if hw <= bw else 'NOT met'}; "
            f"RSS <= 0.25x -> {'met' if hr <= 0.25 * br else 'NOT met'}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
