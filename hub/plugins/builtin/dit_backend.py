"""The built-in inference backend for diffusion transformers: diffusers' ``FluxPipeline``
(Flux.1) and ``StableDiffusion3Pipeline`` (SD3/SD3.5) assembled offline from a model (a
transformer file in the original BFL/SAI layout, ComfyUI's or SAI's whole checkpoint, or a
diffusers folder) and the parts it lacks (text encoders, the 16-channel VAE, the T5
tokenizer), all resolved by ``hub generate`` and passed in ``artifact["parts"]``.

The transformer's weights stay under the file's own keys (fused ``qkv``/``linear1``), and
the diffusers modules' parameters are row views of them, so the LoRA patches of
:class:`adapters.patch.PatchSet` (keyed as ``hub merge`` bakes them) change the live model
and restore bit for bit. fp8 weights are upcast to the compute dtype at load.

Samplers: flow-match Euler (``FlowMatchEulerDiscreteScheduler``) with the scheduler configs
of the model repositories: FLUX.1-dev shift 3.0 with dynamic shifting (base 0.5, max 1.15,
image sequence 256..4096), FLUX.1-schnell shift 1.0 without; SD3/SD3.5 shift 3.0. Flux: T5
sequence length 512, no true CFG; SD3: T5 sequence length 256 and CFG, as the pipelines'
defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import hookimpl
from hub.core import dit_keys, dit_models, flux_keys, ldm_models
from hub.core.errors import HubError
from hub.core.state_dicts import read_state_dict
from hub.core.tokenizer import clip_tokenizer
from hub.plugins.generating import Extras, Request

if TYPE_CHECKING:
    from adapters.patch import PatchSet

FLOW_MATCH = {
    "dev": {"shift": 3.0, "use_dynamic_shifting": True},
    "schnell": {"shift": 1.0, "use_dynamic_shifting": False},
}
FLOW_MATCH_COMMON = {
    "num_train_timesteps": 1000,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
SAMPLERS = ("Euler",)
T5_LENGTH = 512
SD3_FLOW_MATCH = {"num_train_timesteps": 1000, "shift": 3.0}
SD3_T5_LENGTH = 256
# Where a ComfyUI/SAI whole checkpoint keeps its parts.
BUNDLED = {
    "clip": ("text_encoders.clip_l.transformer.", "text_encoders.clip_l."),
    "clip_g": ("text_encoders.clip_g.transformer.", "text_encoders.clip_g."),
    "t5": ("text_encoders.t5xxl.transformer.", "text_encoders.t5xxl."),
    "vae": ("vae.", "first_stage_model."),
}
ALL_BUNDLED = tuple(p for ps in BUNDLED.values() for p in ps)


class DitModel:
    """A diffusion-transformer pipeline whose transformer weights are reachable by the
    file's keys. Subclasses name their parts and build the transformer and pipeline."""

    base = ""

    def __init__(self, artifact: dict[str, Any], device: str, dtype: str) -> None:
        import torch

        from adapters.patch import PatchSet

        self.device, self.dtype = device, dtype
        self._torch_dtype = getattr(torch, dtype)
        self._artifact, self._parts = artifact, artifact.get("parts") or {}
        self._own = read_state_dict(artifact).tensors
        shapes = {k: tuple(v.shape) for k, v in self._own.items()}
        prefix = self._prefix(shapes) or ""
        mine = {
            k: v
            for k, v in self._own.items()
            if k.startswith(prefix) and not k.startswith(ALL_BUNDLED)
        }
        self._weights = dit_models.upcast(mine, device, self._torch_dtype)
        self.transformer, self._copies = self._transformer(self._weights)
        self._patches = PatchSet(self._weights)
        self.pipe = self._pipeline()
        self.pipe.set_progress_bar_config(disable=True)
        del self._own

    def _prefix(self, shapes: dict[str, tuple[int, ...]]) -> str | None:
        raise NotImplementedError

    def _transformer(self, weights: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def _pipeline(self) -> Any:
        raise NotImplementedError

    def part(self, name: str) -> dict[str, Any]:
        """A part's tensors in the compute dtype: the separate file the plan chose, else the
        model's own (a whole checkpoint's section or a diffusers folder's component)."""
        art = self._parts.get(name)
        if art is not None:
            tensors = read_state_dict(art).tensors
            if name == "vae":
                tensors = dit_models.section(tensors, BUNDLED["vae"]) or tensors
            return dit_models.upcast(tensors, self.device, self._torch_dtype)
        if self._artifact["format"] == "diffusers":
            folder = Path(self._artifact["path"]) / dit_keys.DIFFUSERS_FOLDERS[self.base][name]
            return dit_models.upcast(
                ldm_models.component_weights(folder), self.device, self._torch_dtype
            )
        found = dit_models.section(self._own, BUNDLED[name])
        if found is None:
            raise HubError(f"{self._artifact['name']} carries no {name} part and none was given")
        return dit_models.upcast(found, self.device, self._torch_dtype)

    def t5_tokenizer(self) -> Any:
        """The T5 tokenizer part, or the diffusers folder's own."""
        from transformers import T5TokenizerFast

        art = self._parts.get("tokenizer")
        own = Path(self._artifact["path"]) / dit_keys.DIFFUSERS_FOLDERS[self.base]["tokenizer"]
        folder = Path(art["path"]) if art else own
        if not (folder / "tokenizer_config.json").is_file():
            raise HubError(f"{folder}: no T5 tokenizer (tokenizer_config.json) here")
        try:
            return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise HubError(f"{folder}: cannot read the T5 tokenizer ({exc})") from None

    @property
    def weights(self) -> Mapping[str, Any]:
        return self._weights

    @property
    def patches(self) -> PatchSet:
        return self._patches

    def samplers(self) -> list[str]:
        return list(SAMPLERS)

    def _call_args(self, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def generate(
        self,
        request: Request,
        extras: Extras,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Any:
        import torch

        if request.sampler not in SAMPLERS:
            raise HubError(
                f"sampler '{request.sampler}' does not run {self.base} models",
                hint="samplers: " + ", ".join(SAMPLERS),
            )
        if extras.embeddings or extras.hypernetworks:
            raise HubError(f"embeddings and hypernetworks do not apply to {self.base} models")
        dit_models.refresh(self.transformer, self._weights, self._copies)

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
            if on_step is not None:
                on_step(step + 1, request.steps)
            return kwargs

        if on_step is not None:
            on_step(0, request.steps)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        with torch.inference_mode():
            result = self.pipe(
                **self._call_args(request),
                num_inference_steps=request.steps,
                width=request.width,
                height=request.height,
                generator=generator,
                callback_on_step_end=step_end,
                output_type="pil",
            )
        return result.images[0]


class FluxModel(DitModel):
    """Flux.1 (dev, schnell) with ``FluxPipeline``."""

    base = "flux"

    def _prefix(self, shapes: dict[str, tuple[int, ...]]) -> str | None:
        return flux_keys.bfl_prefix(shapes)

    def _transformer(self, weights: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return dit_models.transformer(weights)

    def _pipeline(self) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

        ldm_models.quiet_libraries()
        variant = "dev" if self.transformer.config.guidance_embeds else "schnell"
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**FLOW_MATCH_COMMON, **FLOW_MATCH[variant]),
            vae=dit_models.vae(self.part("vae")),
            text_encoder=dit_models.clip_text(self.part("clip")),
            tokenizer=clip_tokenizer(),
            text_encoder_2=dit_models.t5_encoder(self.part("t5")),
            tokenizer_2=self.t5_tokenizer(),
            transformer=self.transformer,
        )

    def _call_args(self, request: Request) -> dict[str, Any]:
        guidance = request.guidance if request.guidance is not None else 3.5
        return {
            "prompt": request.prompt,
            "guidance_scale": guidance,
            "max_sequence_length": T5_LENGTH,
        }


class SD3Model(DitModel):
    """SD3/SD3.5 (Medium, Large) with ``StableDiffusion3Pipeline``: CLIP-L and CLIP-G with
    their projections, T5, CFG with the negative prompt."""

    base = "sd3"

    def _prefix(self, shapes: dict[str, tuple[int, ...]]) -> str | None:
        return dit_keys.sd3_prefix(shapes)

    def _transformer(self, weights: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return dit_models.sd3_transformer(weights)

    def _pipeline(self) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

        ldm_models.quiet_libraries()
        return StableDiffusion3Pipeline(
            transformer=self.transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(**SD3_FLOW_MATCH),
            vae=dit_models.vae(self.part("vae"), dit_models.SD3_VAE_FACTORS),
            text_encoder=dit_models.clip_text(self.part("clip")),
            tokenizer=clip_tokenizer(),
            text_encoder_2=dit_models.clip_text(self.part("clip_g"), act="gelu"),
            tokenizer_2=clip_tokenizer("!"),
            text_encoder_3=dit_models.t5_encoder(self.part("t5")),
            tokenizer_3=self.t5_tokenizer(),
        )

    def _call_args(self, request: Request) -> dict[str, Any]:
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative or None,
            "guidance_scale": request.cfg,
            "max_sequence_length": SD3_T5_LENGTH,
        }


BACKENDS = {"flux": FluxModel, "sd3": SD3Model}


@hookimpl(trylast=True)
def load_pipeline(artifact: dict[str, Any], device: str, dtype: str) -> DitModel | None:
    backend = BACKENDS.get(artifact["base"])
    if artifact["kind"] != "checkpoint" or backend is None:
        return None
    if artifact["format"] not in ("safetensors", "diffusers"):
        return None
    return backend(artifact, device, dtype)
