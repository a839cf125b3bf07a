"""Switching LoRA stacks on a loaded full-size SD1.5-shaped model (random weights), float32 on
the CPU, in one process:

1. switching to a new stack of three rank-64 kohya LoRAs (at 0.8) plus one 64 px step:
   `Hub.generate` (resolve, parse the LoRAs afresh, check they fit, re-patch, encode, one
   step, decode, write the PNG) against diffusers' `unfuse_lora` + `unload_lora_weights` of
   the previous stack, `load_lora_weights` x3 + `set_adapters` + `fuse_lora`, encoding and one
   step (target: at most 0.5x diffusers' wall time); after one untimed switch each, the two
   sides alternate (A B A B ...), so that the machine's drift hits both alike;
2. a denoising step (UNet forward, batch 2 as with CFG, 256x256; each side the median of 3
   after an untimed one, alternating) with the stack applied and without it (target: within
   2%);
3. `Hub.generate` twice on a fresh Hub, with different stacks, several rounds: the second
   call must not reload the model, and its wall time must be at most 0.2x the first call's
   (which loads the model). The first Hub's first call also pays for importing diffusers
   and torch's first-use costs, so it is shown apart from the later Hubs' as well; a third
   call with the second stack again (nothing to re-patch, the prompt's encodings reused)
   shows what a call costs besides the switch.

Every figure is the median of its runs, with the spread (min-max) beside it.

    python bench/generate.py [--rounds 5] [--call-rounds 3] [--threads N]

On a shared machine, ``--threads 1`` keeps both sides off the thread pool's spin-waits.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fixtures import build_sd15

SMALL = dict(steps=1, width=64, height=64, seed=1)


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


def diffusers_switch(pipe, stack: list[Path], tag: str) -> float:
    """Wall time of diffusers' path to a new stack and one 64 px step: the fused stack before
    unfused and unloaded, the new LoRAs loaded, weighted and fused, the prompt encoded and
    one denoising step run."""
    import torch

    start = time.perf_counter()
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    names = []
    for i, path in enumerate(stack):
        pipe.load_lora_weights(str(path), adapter_name=f"{tag}{i}")
        names.append(f"{tag}{i}")
    pipe.set_adapters(names, [0.8] * len(names))
    pipe.fuse_lora(adapter_names=names)
    with torch.inference_mode():
        ids = torch.full((1, 77), 49407)
        ids[0, 0] = 49406
        embeds = pipe.text_encoder(ids)[0]
        pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=embeds,
            num_inference_steps=1,
            height=64,
            width=64,
            output_type="latent",
        )
    return time.perf_counter() - start


def hub_switch(hub, stack: list[Path]) -> float:
    """Wall time of `Hub.generate` of a new stack (parsed afresh: the Hub's add-on cache is
    emptied first, as for LoRAs it has not seen) and one 64 px step."""
    from hub.generate import ByteCache, Job

    hub.addon_cache = ByteCache(hub.addon_cache.limit)
    job = Job(prompt="a castle", model="sd15-0", loras=[f"{p.stem}:0.8" for p in stack], **SMALL)
    start = time.perf_counter()
    result = hub.generate(job)
    assert not result.reloaded
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


def spread(values: list[float]) -> str:
    """``median (min-max)`` of a side's runs."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


@dataclass
class Calls:
    """One fresh Hub's calls: the first (loads the model), the second with a new stack, the
    third with that stack again (nothing re-patched, the prompt's encodings reused: what a
    call costs besides the switch); seconds, with the second call's patch and time to its
    first step."""

    first: float
    second: float
    again: float
    second_patch: float
    first_to_step: float
    second_to_step: float

    @property
    def ratio(self) -> float:
        return self.second / self.first


def first_and_second_calls(home: Path, first: list[Path], other: list[Path]) -> Calls:
    """A fresh Hub's first call (which loads the model), its second, with a new stack (it
    must not reload), and a third with that stack again."""
    import gc

    from hub.generate import Hub, Job

    hub = Hub(home=home, device="cpu", dtype="float32")
    times, results = [], []
    for stack in (first, other, other):
        start = time.perf_counter()
        results.append(
            hub.generate(Job(prompt="a castle", model="sd15-0", loras=_refs(stack), **SMALL))
        )
        times.append(time.perf_counter() - start)
    assert not results[1].reloaded and not results[2].reloaded
    one, two = results[0].timings, results[1].timings
    calls = Calls(*times, two["patch"], one["to_first_step"], two["to_first_step"])
    print(
        f"calls: {calls.first:.2f} {calls.second:.2f} {calls.again:.2f}",
        file=sys.stderr,
        flush=True,
    )
    del hub, results
    gc.collect()
    return calls


def main(rounds: int = 5, call_rounds: int = 3) -> None:
    import gc

    import torch

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="hub-bench-generate-"))
    try:
        (ckpt,), loras, config = build_sd15(work, checkpoints=1, loras=9)
        first, stacks = loras[:3], [loras[3:6], loras[6:9]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        home = work / "home"
        subprocess.run(
            [sys.executable, "-m", "hub", "--home", str(home), "scan", str(work / "models"), "-q"],
            env=env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        from hub.generate import Hub, Job

        # 1st / 2nd call, each round on a fresh Hub (the 1st call loads the model)
        calls = [first_and_second_calls(home, first, stacks[i % 2]) for i in range(call_rounds)]
        hub = Hub(home=home, device="cpu", dtype="float32")
        hub.generate(Job(prompt="a castle", model="sd15-0", loras=_refs(first), **SMALL))
        pipe = _diffusers_pipe(ckpt, config)
        for i, path in enumerate(first):  # the stack before the switches, fused
            pipe.load_lora_weights(str(path), adapter_name=f"first{i}")
        pipe.set_adapters([f"first{i}" for i in range(3)], [0.8] * 3)
        pipe.fuse_lora(adapter_names=[f"first{i}" for i in range(3)])
        ours, theirs = [], []
        hub_switch(hub, stacks[1])  # one untimed switch each: first-touch costs
        diffusers_switch(pipe, stacks[1], "w")
        for i in range(rounds):  # alternate, so drift hits both sides alike
            ours.append(hub_switch(hub, stacks[i % 2]))
            theirs.append(diffusers_switch(pipe, stacks[i % 2], f"s{i}"))
            print(f"switch: {ours[-1]:.2f} {theirs[-1]:.2f}", file=sys.stderr, flush=True)
        pipe = None
        gc.collect()
        unet = hub.loaded.parts["unet"]
        plain, stacked = [], []
        for _ in range(rounds):
            hub.loaded.patches.restore()
            plain.append(step_time(unet))
            hub.generate(Job(prompt="x", model="sd15-0", loras=_refs(first), **SMALL))
            stacked.append(step_time(unet))
        o, t = statistics.median(ours), statistics.median(theirs)
        ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        base_step, with_stack = statistics.median(plain), statistics.median(stacked)
        print(
            f"SD1.5-shaped UNet + text encoder, float32 CPU ({torch.get_num_threads()} threads); "
            f"kohya LoRAs of rank 64 ({loras[0].stat().st_size / 2**20:.0f} MiB each), stacks "
            f"of 3 at 0.8; median (min-max) of {rounds} alternating runs a side"
        )
        print(f"{'measure':<52}{'diffusers':>20}{'sd-hub':>20}{'ratio':>7}  target")
        print(
            f"{'switch to a new stack + one 64 px step (s)':<52}{spread(theirs):>20}"
            f"{spread(ours):>20}{ratio:>7.2f}  <= 0.5x: {'met' if o <= 0.5 * t else 'NOT met'}"
        )
        print(
            f"{'UNet step 256x256 batch 2, no stack / stack (s)':<52}{spread(plain):>20}"
            f"{spread(stacked):>20}{with_stack / base_step:>7.3f}  within 2%: "
            f"{'met' if abs(with_stack / base_step - 1) <= 0.02 else 'NOT met'}"
        )
        _print_calls("every Hub", calls)
        if len(calls) > 1:  # the first Hub's first call also pays for importing diffusers
            _print_calls("Hub 1 (imports)", calls[:1])
            _print_calls("Hubs 2+", calls[1:])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refs(stack: list[Path]) -> list[str]:
    return [f"{p.stem}:0.8" for p in stack]


def _print_calls(title: str, calls: list[Calls]) -> None:
    """The 1st / 2nd call rows of the table, and what the 2nd call spends."""
    ratio = statistics.median(c.ratio for c in calls)
    ratios = [c.ratio for c in calls]
    print(
        f"{title + ': 1st / 2nd call, new stack (s)':<52}"
        f"{spread([c.first for c in calls]):>20}{spread([c.second for c in calls]):>20}"
        f"{ratio:>7.3f}  <= 0.2x: {'met' if ratio <= 0.2 else 'NOT met'} "
        f"(ratios {min(ratios):.3f}-{max(ratios):.3f}; {len(calls)} fresh Hubs)"
    )
    f1 = statistics.median(c.first_to_step for c in calls)
    f2 = statistics.median(c.second_to_step for c in calls)
    print(f"{'  of which call to first step (s)':<52}{f1:>20.2f}{f2:>20.2f}{f2 / f1:>7.3f}")
    print(
        f"{'  2nd call: patching / same stack again (s)':<52}"
        f"{spread([c.second_patch for c in calls]):>20}{spread([c.again for c in calls]):>20}"
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs a side")
    parser.add_argument("--call-rounds", type=int, default=3, help="fresh Hubs for 1st/2nd")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads, both sides (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    main(args.rounds, args.call_rounds)
