"""Baking LoRAs into a full-size SD1.5-shaped fp16 checkpoint (random weights, real names and
shapes, about 2 GB): `hub merge CKPT --lora ...` with one rank-64 LoRA and with a stack of
three, against diffusers (`from_single_file` + `load_lora_weights` + `fuse_lora` + saving)
in the same run, alternating over several rounds (medians); then a weighted-sum merge of two
such checkpoints. Wall time and peak RSS from /usr/bin/time -v. Targets: bake at most 0.5x
diffusers' wall time and 0.3x its peak RSS; the merge's peak RSS under 0.2x the two inputs'
size.

    python bench/merge.py [--rounds 3]
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

from fixtures import build_sd15
from timing import measure

DIFFUSERS = """
import sys, json, torch
from pathlib import Path
from diffusers import UNet2DConditionModel, StableDiffusionPipeline, EulerDiscreteScheduler
from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel
ckpt, config, out, loras = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
unet = UNet2DConditionModel.from_single_file(ckpt, config=config, subfolder="unet",
                                             torch_dtype=torch.float16)
text = CLIPTextModel(CLIPTextConfig.from_pretrained(config + "/text_encoder")).half()
state = convert_ldm_clip_checkpoint(load_file(ckpt), "cond_stage_model.transformer.")
text.load_state_dict({k.removeprefix("text_model."): v for k, v in state.items()}, strict=False)
del state
pipe = StableDiffusionPipeline(vae=None, text_encoder=text, tokenizer=None, unet=unet,
                               scheduler=EulerDiscreteScheduler(), safety_checker=None,
                               feature_extractor=None, requires_safety_checker=False)
names = []
for i, path in enumerate(loras):
    pipe.load_lora_weights(path, adapter_name=f"l{i}")
    names.append(f"l{i}")
pipe.set_adapters(names, [1.0] * len(names))
pipe.fuse_lora(adapter_names=names)
pipe.unload_lora_weights()
save_file({**{f"unet.{k}": v.contiguous() for k, v in pipe.unet.state_dict().items()},
           **{f"te.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()}}, out)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-merge-"))
    try:
        (a, b), loras, config = build_sd15(work, checkpoints=2, loras=3)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
            "HUB_HOME": str(work / "home"),
        }
        hub = [sys.executable, "-m", "hub"]
        subprocess.run(
            [*hub, "scan", str(work / "models"), "-q"],
            env=env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        rows = []
        for label, stack in (("1 LoRA", loras[:1]), ("3 LoRAs", loras)):
            names = [p.stem for p in stack]
            diffusers = [
                sys.executable,
                "-c",
                DIFFUSERS,
                str(a),
                str(config),
                str(work / "d.safetensors"),
                *map(str, stack),
            ]
            bake = [*hub, "merge", "sd15-0", *sum((["--lora", n] for n in names), [])]
            d, h = [], []
            for _ in range(args.rounds):
                (work / "d.safetensors").unlink(missing_ok=True)
                d.append(measure(diffusers, env))
                h.append(measure([*bake, "--name", "baked", "-q"], env))
                remove = [*hub, "rm", "baked", "-y"]
                subprocess.run(remove, env=env, check=True, capture_output=True)
            rows.append((label, _medians(d), _medians(h)))
        m = measure([*hub, "merge", "sd15-0", "--with", "sd15-1", "--name", "ws", "-q"], env)
        inputs = a.stat().st_size + b.stat().st_size
        print(
            f"checkpoint: {a.stat().st_size / 2**30:.2f} GiB fp16 SD1.5-shaped; LoRAs rank 64 "
            f"({loras[0].stat().st_size / 2**20:.0f} MiB each); medians of {args.rounds} rounds"
        )
        print(
            f"{'bake':<10}{'diffusers s':>12}{'hub s':>8}{'wall x':>8}"
            f"{'diffusers MiB':>15}{'hub MiB':>9}{'RSS x':>7}  targets (<=0.5x, <=0.3x)"
        )
        for label, (dw, dr), (hw, hr) in rows:
            met = "met" if hw <= 0.5 * dw and hr <= 0.3 * dr else "NOT met"
            print(
                f"{label:<10}{dw:>12.1f}{hw:>8.1f}{hw / dw:>8.2f}{dr / 2**20:>15.0f}"
                f"{hr / 2**20:>9.0f}{hr / dr:>7.2f}  {met}"
            )
        print(
            f"weighted-sum merge of two: {m[0]:.1f} s, peak RSS {m[1] / 2**20:.0f} MiB = "
            f"{m[1] / inputs:.3f}x the inputs ({inputs / 2**30:.2f} GiB); target < 0.2x: "
            f"{'met' if m[1] < 0.2 * inputs else 'NOT met'}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _medians(runs: list[tuple[float, int]]) -> tuple[float, int]:
    return statistics.median(w for w, _ in runs), int(statistics.median(r for _, r in runs))


if __name__ == "__main__":
    main()
