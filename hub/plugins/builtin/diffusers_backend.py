"""The built-in inference backend: diffusers pipelines assembled offline from a registered
single-file checkpoint or diffusers folder (configs derived from the weights, the CLIP
tokenizer from the data shipped with sd-hub)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from adapters import ldm_keys
from hub import hookimpl
from hub.core import ldm_models
from hub.core.errors import HubError
from hub.core.state_dicts import read_state_dict
from hub.core.tokenizer import clip_tokenizer
from hub.plugins.generating import Extras, Request

if TYPE_CHECKING:
    from adapters.patch import PatchSet
    from hub.core.emphasis import Pieces

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PLMS": ("PNDMScheduler", {}),
}
SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
}
DTYPES = ("float32", "float16", "bfloat16")
TEXT_PREFIXES = ("cond_stage_model.", "conditioner.")  # the text encoders' weights
_KEEP = (ldm_keys.UNET_PREFIX, ldm_keys.VAE_PREFIX, *TEXT_PREFIXES)


class DiffusersModel:
    """A Stable Diffusion pipeline whose weights are also reachable by single-file key."""

    def __init__(self, artifact: dict[str, Any], device: str, dtype: str) -> None:
        import torch

        from adapters.patch import PatchSet

        self.base = artifact["base"]
        self.device, self.dtype = device, dtype
        self.prediction = artifact.get("prediction")
        ldm_models.check_base(self.base, artifact["path"])
        torch_dtype = getattr(torch, dtype)
        state = read_state_dict(artifact, keep=lambda k: k.startswith(_KEEP))
        weights = {
            k: (v.to(device, torch_dtype) if v.is_floating_point() else v.to(device))
            for k, v in state.tensors.items()
        }
        self.parts = ldm_models.components(weights, self.base)
        self._weights = weights
        self._patches = PatchSet(weights)
        self._tokenizers = [clip_tokenizer()]
        if self.base == "sdxl":
            self._tokenizers.append(clip_tokenizer("!"))
        elif self.base == "sd2":
            self._tokenizers = [clip_tokenizer("!")]
        self._vaes: dict[str, Any] = {}
        self._schedulers: dict[tuple[str, str], Any] = {}
        self._last_text: tuple[Hashable, dict[str, Any]] | None = None  # (key, encodings)
        self.pipe = self._pipeline()

    @property
    def weights(self) -> Mapping[str, Any]:
        return self._weights

    @property
    def patches(self) -> PatchSet:
        return self._patches

    def samplers(self) -> list[str]:
        return list(SAMPLERS)

    def _pipeline(self) -> Any:
        ldm_models.quiet_libraries()
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        p = self.parts
        if self.base == "sdxl":
            pipe = StableDiffusionXLPipeline(
                vae=p["vae"],
                text_encoder=p["text_encoder"],
                text_encoder_2=p["text_encoder_2"],
                tokenizer=self._tokenizers[0],
                tokenizer_2=self._tokenizers[1],
                unet=p["unet"],
                scheduler=self._scheduler("Euler", "Automatic"),
                add_watermarker=False,
            )
        else:
            pipe = StableDiffusionPipeline(
                vae=p["vae"],
                text_encoder=p["text_encoder"],
                tokenizer=self._tokenizers[0],
                unet=p["unet"],
                scheduler=self._scheduler("Euler", "Automatic"),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _scheduler(self, sampler: str, schedule: str) -> Any:
        import diffusers

        if sampler not in SAMPLERS:
            raise HubError(f"unknown sampler '{sampler}'", hint="samplers: " + ", ".join(SAMPLERS))
        if schedule not in SCHEDULES:
            raise HubError(
                f"unknown schedule type '{schedule}'", hint="schedules: " + ", ".join(SCHEDULES)
            )
        key = (sampler, schedule)
        if key not in self._schedulers:
            cls_name, options = SAMPLERS[sampler]
            config = {k: v for k, v in ldm_models.SCHEDULER.items() if k != "_class_name"}
            if self.prediction == "v":
                config["prediction_type"] = "v_prediction"
            cls = getattr(diffusers, cls_name)
            self._schedulers[key] = cls.from_config(config | options | SCHEDULES[schedule])
        return self._schedulers[key]

    def _vae(self, extras: Extras) -> Any:
        if extras.vae is None:
            return self.parts["vae"]
        name, state = extras.vae
        if name not in self._vaes:
            import torch

            dtype = getattr(torch, self.dtype)
            moved = {k: v.to(self.device, dtype) for k, v in state.items()}
            self._vaes = {name: ldm_models.vae(moved, self.base)}  # one swapped VAE at a time
        return self._vaes[name]

    @contextmanager
    def _embeddings(self, extras: Extras) -> Iterator[Callable[[str], str]]:
        """Tokens and embedding rows for each embedding on fresh tokenizer copies; the
        originals come back on exit. Yields the prompt rewrite (name -> its tokens)."""
        import torch

        encoders = [self.parts["text_encoder"]]
        if self.base == "sdxl":
            encoders.append(self.parts["text_encoder_2"])
        slots = ["clip_l", "clip_g"] if self.base == "sdxl" else ["text"]
        saved = [(enc, enc.get_input_embeddings()) for enc in encoders]
        tokens = {
            name: [f"<{name}>"] + [f"<{name}_{i}>" for i in range(1, emb.count)]
            for name, emb in extras.embeddings
        }
        try:
            for i, (enc, table) in enumerate(saved):
                if not extras.embeddings:
                    break
                tok = copy.deepcopy(self._tokenizers[i])
                new = [t for name, _ in extras.embeddings for t in tokens[name]]
                tok.add_tokens(new)
                first = table.weight.shape[0]
                if tok.convert_tokens_to_ids(new) != list(range(first, first + len(new))):
                    raise HubError("embedding tokens clash with the tokenizer's vocabulary")
                rows = torch.cat([emb.vectors[slots[i]] for _, emb in extras.embeddings])
                weight = torch.cat([table.weight.detach(), rows.to(table.weight)])
                enc.set_input_embeddings(torch.nn.Embedding.from_pretrained(weight, freeze=True))
                setattr(self.pipe, "tokenizer" if i == 0 else "tokenizer_2", tok)
            patterns = [
                (re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE), " ".join(t))
                for name, t in tokens.items()
            ]

            def rewrite(text: str) -> str:
                for pattern, replacement in patterns:
                    text = pattern.sub(replacement, text)
                return text

            yield rewrite
        finally:
            for i, (enc, table) in enumerate(saved):
                enc.set_input_embeddings(table)
                setattr(self.pipe, "tokenizer" if i == 0 else "tokenizer_2", self._tokenizers[i])

    def prompt_inputs(self, prompt: str, negative: str, clip_skip: int) -> dict[str, Any]:
        """The pipeline's text inputs for a prompt pair (embedding names already rewritten):
        the plain texts where diffusers' own 77-token encoding gives the A1111 result, else
        the encodings themselves, chunked and weighted (:mod:`hub.core.emphasis`)."""
        from hub.core import emphasis

        parsed = [emphasis.parse(prompt), emphasis.parse(negative)]
        chunked = [self._chunks(p, 0) for p in parsed]
        if clip_skip == 1 and not any(map(emphasis.needs_chunks, parsed, chunked)):
            return {
                "prompt": emphasis.plain_text(parsed[0]),
                "negative_prompt": emphasis.plain_text(parsed[1]) or None,
            }
        return self.encode_chunks(parsed, clip_skip)

    def text_inputs(self, request: Request, rewrite: Callable[[str], str], extras: Extras) -> Any:
        """:meth:`prompt_inputs` as encodings, the last ones kept: a call with the same
        prompts and clip skip while the text encoders' weights are unchanged (no add-on
        written into them since) and no embedding is added reuses them."""
        key = (
            request.prompt,
            request.negative,
            request.clip_skip,
            self._patches.writes(TEXT_PREFIXES),
        )
        if not extras.embeddings and self._last_text and self._last_text[0] == key:
            return self._last_text[1]
        text = self.prompt_inputs(
            rewrite(request.prompt), rewrite(request.negative), request.clip_skip
        )
        if "prompt" in text:  # plain text: encoded here as the pipeline would encode it
            text = self._encode_plain(text["prompt"], text["negative_prompt"])
        self._last_text = None if extras.embeddings else (key, text)
        return text

    def _encode_plain(self, prompt: str, negative: str | None) -> dict[str, Any]:
        """diffusers' own encoding of a plain prompt pair, with the arguments its pipeline
        passes (classifier-free guidance on: the negative side is there if a call needs it)."""
        if self.base == "sdxl":
            embeds, negative_embeds, pooled, negative_pooled = self.pipe.encode_prompt(
                prompt=prompt,
                device=self.pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                negative_prompt=negative,
            )
            return {
                "prompt_embeds": embeds,
                "negative_prompt_embeds": negative_embeds,
                "pooled_prompt_embeds": pooled,
                "negative_pooled_prompt_embeds": negative_pooled,
            }
        embeds, negative_embeds = self.pipe.encode_prompt(
            prompt, self.pipe._execution_device, 1, True, negative
        )
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}

    @property
    def _comma(self) -> int:
        return self.pipe.tokenizer.convert_tokens_to_ids(",</w>")

    def _chunks(self, pieces: Pieces, i: int) -> list[Any]:
        """A parsed prompt in chunks for tokenizer ``i``, keeping each multi-vector embedding
        (tokens ``<name>``, ``<name_1>``, ... as :meth:`_embeddings` adds them) in one chunk."""
        from hub.core import emphasis

        tok = self.pipe.tokenizer if i == 0 else self.pipe.tokenizer_2
        added = tok.get_added_vocab()
        groups = {}
        for token, first in added.items():
            count = 1
            while f"{token[:-1]}_{count}>" in added:
                count += 1
            if count > 1:
                groups[first] = count
        return emphasis.chunks(
            pieces, lambda text: tok(text, add_special_tokens=False).input_ids, self._comma, groups
        )

    def encode_chunks(self, parsed: list[Pieces], clip_skip: int) -> dict[str, Any]:
        """Prompt and negative encodings, chunk by chunk: each chunk as diffusers encodes a
        prompt (the layer ``clip_skip`` counts back, A1111-style), weighted as A1111 does; the
        shorter side padded with empty chunks; sdxl's pooled output from the first chunk."""
        import torch

        from hub.core import emphasis

        encoders = [(self.parts["text_encoder"], self.pipe.tokenizer)]
        if self.base == "sdxl":
            encoders.append((self.parts["text_encoder_2"], self.pipe.tokenizer_2))
        chunked = {
            (i, side): self._chunks(parsed[side], i)
            for i in range(len(encoders))
            for side in (0, 1)
        }
        longest = max(map(len, chunked.values()))
        sides = []
        for side in (0, 1):
            zs, pooled = [], None
            for i, (encoder, tok) in enumerate(encoders):
                chunks = chunked[i, side] + [emphasis.Chunk()] * (longest - len(chunked[i, side]))
                framed = [
                    emphasis.frame(c, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
                    for c in chunks
                ]
                ids = torch.tensor([ids for ids, _ in framed], device=self.device)
                weights = torch.tensor([w for _, w in framed], device=self.device)
                out = encoder(ids, output_hidden_states=True)
                if self.base == "sdxl":
                    z = out.hidden_states[-(clip_skip + 1)]
                    if out[0].ndim == 2:  # the projected encoder's pooled output
                        pooled = out[0][:1]
                elif clip_skip == 1:
                    z = out[0]
                else:
                    norm = getattr(encoder, "text_model", encoder).final_layer_norm
                    z = norm(out.hidden_states[-clip_skip])
                z = torch.stack([emphasis.reweight(z[k], weights[k]) for k in range(len(z))])
                zs.append(z.reshape(1, -1, z.shape[-1]))
            sides.append((torch.cat(zs, dim=-1), pooled))
        (embeds, pooled), (negative, negative_pooled) = sides
        if self.base != "sdxl":
            return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
        if not emphasis.plain_text(parsed[1]):  # diffusers' sdxl rule for no negative prompt
            negative, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
        return {
            "prompt_embeds": embeds,
            "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": negative_pooled,
        }

    def generate(
        self,
        request: Request,
        extras: Extras,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Any:
        import torch

        from adapters.hypernetwork import attached

        self.pipe.scheduler = self._scheduler(request.sampler, request.schedule)
        self.pipe.vae = self._vae(extras)

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
            if on_step is not None:
                on_step(step + 1, request.steps)
            return kwargs

        def step_begin(module: Any, args: Any) -> None:
            if on_step is not None and not began:
                began.append(True)
                on_step(0, request.steps)

        began: list[bool] = []
        hook = self.parts["unet"].register_forward_pre_hook(step_begin)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        try:
            with (
                self._embeddings(extras) as rewrite,
                attached(self.parts["unet"], list(extras.hypernetworks)),
                torch.inference_mode(),
            ):
                text = self.text_inputs(request, rewrite, extras)
                result = self.pipe(
                    **text,
                    num_inference_steps=request.steps,
                    guidance_scale=request.cfg,
                    width=request.width,
                    height=request.height,
                    generator=generator,
                    callback_on_step_end=step_end,
                    output_type="pil",
                )
        finally:
            hook.remove()
            self.pipe.vae = self.parts["vae"]
        return result.images[0]


@hookimpl(trylast=True)
def load_pipeline(artifact: dict[str, Any], device: str, dtype: str) -> DiffusersModel | None:
    if artifact["kind"] != "checkpoint" or artifact["format"] not in (
        "safetensors",
        "diffusers",
        "pickle",
    ):
        return None
    return DiffusersModel(artifact, device, dtype)
