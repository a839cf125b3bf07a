"""Switching LoRA stacks on a loaded full-size SD1.5-shaped model (random weights), float32 on
the CPU, in one process:

1. apply a stack of three rank-64 kohya LoRAs, then switch to another stack of three, then
   remove it: sd-hub's planner + patcher (what `hub generate` runs between jobs) against
   diffusers' `load_lora_weights` + `set_adapters` + `fuse_lora`, then `unfuse_lora` +
   `unload_lora_weights` (target: at most 0.5x diffusers' wall time);
2. a denoising step (UNet forward, batch 2 as with CFG, 256x256; each side the median of 3
   after an untimed one, 7 alternations, medians) with the stack applied and without it
   (target: within 2%);
3. `Hub.generate` twice in one process with different stacks: the second call must not
   reload the model, and its time from call to the first denoising step must be at most 0.2x
   the first call's.

    python bench/generate.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures import build_sd15


def _diffusers_pipe(ckpt: Path, config: Path):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel.from_single_file(
        str(ckpt), config=str(config), subfolder="unet", torch_dtype=torch.float32
    )
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))
    state = convert_ldm_clip_checkpoint(load_file(ckpt), "cond_stage_model.transformer.")
    text.load_state_dict(
        {k.removeprefix("text_model."): v.float() for k, v in state.items()}, strict=False
    )
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=text,
        tokenizer=None,
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def diffusers_switch(pipe, first: list[Path], second: list[Path]) -> float:
    start = time.perf_counter()
    for stack, tag in ((first, "a"), (second, "b")):
        names = []
        for i, path in enumerate(stack):
            pipe.load_lora_weights(str(path), adapter_name=f"{tag}{i}")
            names.append(f"{tag}{i}")
        pipe.set_adapters(names, [0.8] * len(names))
        pipe.fuse_lora(adapter_names=names)
        pipe.unfuse_lora()
        pipe.unload_lora_weights()
    return time.perf_counter() - start


def hub_switch(hub, first: list[Path], second: list[Path]) -> float:
    """What `Hub.generate` does before denoising: plan (registry, parse, fit), patch."""
    from adapters import patch
    from hub import addons
    from hub.generate import Job, _cached

    model = hub.loaded
    start = time.perf_counter()
    for stack in (first, second):
        job = Job(prompt="x", model="sd15-0", loras=[f"{p.stem}:0.8" for p in stack])
        plan = hub.plan(job)
        changes = patch.plan(
            [
                (fit, _cached(hub.ctx, a.art, addons.lora), a.te, a.unet)
                for a, fit in zip(plan.loras, plan.fits, strict=True)
            ]
        )
        model.patches.update(changes)
    model.patches.restore()
    return time.perf_counter() - start


def step_time(unet, repeats: int = 3) -> float:
    """Median time of ``repeats`` UNet forwards, after one untimed forward (the first after a
    generate call pays for taking back the memory that call freed)."""
    import torch

    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 32, 32, generator=g)
    context = torch.randn(2, 77, 768, generator=g)
    times = []
    with torch.inference_mode():
        unet(sample, 500, encoder_hidden_states=context)
        for _ in range(repeats):
            start = time.perf_counter()
            unet(sample, 500, encoder_hidden_states=context)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torch

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="hub-bench-generate-"))
    try:
        (ckpt,), loras, config = build_sd15(work, checkpoints=1, loras=6)
        first, second = loras[:3], loras[3:]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        home = work / "home"
        subprocess.run(
            [sys.executable, "-m", "hub", "--home", str(home), "scan", str(work / "models"), "-q"],
            env=env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        from hub.generate import Hub, Job

        hub = Hub(home=home, device="cpu", dtype="float32")
        small = dict(steps=1, width=64, height=64, seed=1)
        one = hub.generate(
            Job(prompt="a castle", model="sd15-0", loras=[p.stem for p in first], **small)
        )
        two = hub.generate(
            Job(prompt="a castle", model="sd15-0", loras=[p.stem for p in second], **small)
        )
        hub.loaded.patches.restore()
        ours = [hub_switch(hub, first, second) for _ in range(2)]
        unet = hub.loaded.parts["unet"]
        plain, stacked = [], []
        for _ in range(7):  # alternate, so drift hits both sides alike
            hub.loaded.patches.restore()
            plain.append(step_time(unet))
            hub.generate(Job(prompt="x", model="sd15-0", loras=[p.stem for p in first], **small))
            stacked.append(step_time(unet))
        hub = None
        pipe = _diffusers_pipe(ckpt, config)
        theirs = [diffusers_switch(pipe, first, second) for _ in range(2)]
        o, t = statistics.median(ours), statistics.median(theirs)
        base_step, stacked = statistics.median(plain), statistics.median(stacked)
        print(
            f"SD1.5-shaped UNet + text encoder, float32 CPU; 6 kohya LoRAs of rank 64 "
            f"({loras[0].stat().st_size / 2**20:.0f} MiB each)"
        )
        print(f"{'measure':<52}{'diffusers':>10}{'sd-hub':>8}{'ratio':>7}  target")
        print(
            f"{'apply 3 LoRAs, switch to 3 others, remove (s)':<52}{t:>10.2f}{o:>8.2f}"
            f"{o / t:>7.2f}  <= 0.5x: {'met' if o <= 0.5 * t else 'NOT met'}"
        )
        print(
            f"{'UNet step 256x256 batch 2, no stack / stack (s)':<52}{base_step:>10.2f}"
            f"{stacked:>8.2f}{stacked / base_step:>7.3f}  within 2%: "
            f"{'met' if abs(stacked / base_step - 1) <= 0.02 else 'NOT met'}"
        )
        f1, f2 = one.timings["to_first_step"], two.timings["to_first_step"]
        print(
            f"{'generate: call to first step, 1st / 2nd call (s)':<52}{f1:>10.2f}{f2:>8.2f}"
            f"{f2 / f1:>7.3f}  <= 0.2x: {'met' if f2 <= 0.2 * f1 else 'NOT met'}; "
            f"second call reloaded the model: {two.reloaded}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
