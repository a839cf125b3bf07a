"""Baking a rank-16 kohya LoRA (every Linear of the double and single blocks) into a
full-size Flux.1-dev-shaped transformer (random weights, BFL names and shapes from diffusers'
FluxTransformer2DModel on the meta device): `hub merge FLUX --lora L` against `cp` of the same
file, in the same run. Wall time and peak RSS from /usr/bin/time -v. Targets: bake at most
1.5x `cp`'s wall time, peak RSS at most 1.5 GB.

    python bench/flux_bake.py [--dtype fp8|bf16] [--depth-scale 1.0] [--dir DIR]

fp8 is about 12 GB, bf16 about 24 GB; each run needs twice that on disk (the input, then the
copy or the baked output). ``--depth-scale 0.5`` keeps half the blocks (every width full).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import measure

RANK = 16
POOL = 1 << 27  # random values reused as every tensor's bytes (the content costs nothing)


def flux_shapes(depth_scale: float) -> dict[str, tuple[int, ...]]:
    """BFL names and shapes of a Flux.1-dev transformer (fewer blocks when scaled)."""
    import torch
    from diffusers import FluxTransformer2DModel

    from hub.core import flux_keys

    with torch.device("meta"):
        model = FluxTransformer2DModel(
            guidance_embeds=True,
            num_layers=max(1, round(19 * depth_scale)),
            num_single_layers=max(1, round(38 * depth_scale)),
        )
        state = flux_keys.bfl_from_diffusers(model.state_dict())
    return {k: tuple(v.shape) for k, v in state.items()}


def write_model(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str) -> None:
    """The transformer file, streamed: each tensor is a view of one pool of random values."""
    import torch

    from hub.core.safetensors_io import TensorSpec, write_safetensors

    torch_dtype = {"F8_E4M3": torch.float8_e4m3fn, "BF16": torch.bfloat16}[dtype]
    pool = (torch.randn(POOL, generator=torch.Generator().manual_seed(0)) * 0.05).to(torch_dtype)

    def produce(spec: TensorSpec):
        row = math.prod(spec.shape[1:])
        rows = spec.shape[0] if spec.shape else 1
        step = max(1, POOL // max(row, 1))
        for lo in range(0, rows, step):
            n = min(step, rows - lo)
            yield pool[: n * row].reshape(n, *spec.shape[1:]) if spec.shape else pool[:1]

    specs = [TensorSpec(k, dtype, s) for k, s in shapes.items()]
    write_safetensors(path, specs, produce)


def write_lora(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A kohya sd-scripts Flux LoRA, rank 16, bf16, alpha 16, on every block Linear."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in shapes.items():
        if key.startswith(("double_blocks.", "single_blocks.")) and len(shape) == 2:
            name = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
            down = torch.randn(RANK, shape[1], generator=gen) * 0.01
            state[f"{name}.lora_down.weight"] = down.to(torch.bfloat16)
            state[f"{name}.lora_up.weight"] = torch.zeros(shape[0], RANK, dtype=torch.bfloat16)
            state[f"{name}.lora_up.weight"].normal_(0, 0.01, generator=gen)
            state[f"{name}.alpha"] = torch.tensor(float(RANK))
    save_file(state, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["fp8", "bf16"], default="fp8")
    ap.add_argument("--depth-scale", type=float, default=1.0)
    ap.add_argument("--dir", type=Path, default=None, help="where the files go (default: /tmp)")
    args = ap.parse_args()
    dtype = {"fp8": "F8_E4M3", "bf16": "BF16"}[args.dtype]
    work = Path(tempfile.mkdtemp(prefix="hub-bench-flux-", dir=args.dir))
    try:
        models = work / "models"
        models.mkdir()
        shapes = flux_shapes(args.depth_scale)
        model = models / "flux1-dev.safetensors"
        write_model(model, shapes, dtype)
        write_lora(models / "lora.safetensors", shapes)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
            "HUB_HOME": str(work / "home"),
        }
        hub = [sys.executable, "-m", "hub"]
        subprocess.run([*hub, "scan", str(models), "-q"], env=env, check=True)
        target = work / "copy.safetensors"
        copy = measure(["cp", str(model), str(target)], env)
        target.unlink()
        # hub merge fsyncs its output before it renames it into place; cp does not
        durable = measure(["sh", "-c", 'cp "$0" "$1" && sync "$1"', str(model), str(target)], env)
        target.unlink()
        bake = measure([*hub, "merge", "flux1-dev", "--lora", "lora", "--name", "baked", "-q"], env)
        size = model.stat().st_size
        print(
            f"Flux.1-dev-shaped transformer, {args.dtype}, {size / 2**30:.2f} GiB "
            f"(depth x{args.depth_scale}); kohya LoRA rank {RANK} on "
            f"{sum(1 for k in shapes if k.endswith('.weight') and 'blocks.' in k)} block weights"
        )
        print(f"{'run':<12}{'wall s':>8}{'peak RSS MiB':>14}")
        for label, (wall, rss) in (("cp", copy), ("cp + fsync", durable), ("hub merge", bake)):
            print(f"{label:<12}{wall:>8.1f}{rss / 2**20:>14.0f}")
        ratio = bake[0] / copy[0]
        met = "met" if ratio <= 1.5 and bake[1] <= 1.5e9 else "NOT met"
        print(
            f"bake/cp wall {ratio:.2f}x (bake/cp+fsync {bake[0] / durable[0]:.2f}x), peak RSS "
            f"{bake[1] / 1e9:.2f} GB; targets (<=1.5x cp, <=1.5 GB): {met}; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
