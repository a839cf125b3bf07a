"""The built-in Flux.1 inference backend: diffusers' ``FluxPipeline`` assembled offline from a
Flux model (a BFL-layout transformer file, ComfyUI's whole checkpoint or a diffusers folder)
and the parts it lacks (CLIP-L and T5 text encoders, the 16-channel VAE, the T5 tokenizer),
all resolved by ``hub generate`` and passed in ``artifact["parts"]``.

The transformer's weights stay under the file's own keys (BFL fused ``qkv``/``linear1``), and
the diffusers modules' parameters are row views of them, so the LoRA patches of
:class:`adapters.patch.PatchSet` (keyed as ``hub merge`` bakes them) change the live model
and restore bit for bit. fp8 weights are upcast to the compute dtype at load.

Sampler: flow-match Euler (``FlowMatchEulerDiscreteScheduler``) with the scheduler config of
the black-forest-labs FLUX.1 repositories: dev shift 3.0 with dynamic shifting (base 0.5,
max 1.15, image sequence 256..4096), schnell shift 1.0 without. T5 sequence length 512 and
no true CFG, as ``FluxPipeline``'s defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import hookimpl
from hub.core import dit_models, flux_keys
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
# Where a ComfyUI whole checkpoint keeps its parts.
BUNDLED = {
    "clip": ("text_encoders.clip_l.transformer.", "text_encoders.clip_l."),
    "t5": ("text_encoders.t5xxl.transformer.", "text_encoders.t5xxl."),
    "vae": ("vae.", "first_stage_model."),
}
# Where a diffusers folder keeps them.
FOLDERS = {"clip": "text_encoder", "t5": "text_encoder_2", "vae": "vae"}


def _upcast(tensors: Mapping[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """Floating tensors in the compute dtype (fp8 included); ComfyUI's "scaled" fp8 weights
    multiplied back by their ``scale_weight``."""
    import torch

    out = {}
    for key, value in tensors.items():
        if key == "scaled_fp8" or key.endswith(".scale_weight"):
            continue
        scale = tensors.get(key.removesuffix("weight") + "scale_weight")
        if scale is not None:
            value = value.to(torch.float32) * scale.to(torch.float32)
        out[key] = value.to(device, dtype) if value.is_floating_point() else value.to(device)
    return out


def _section(tensors: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any] | None:
    for prefix in prefixes:
        found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found
    return None


class FluxModel:
    """A Flux.1 pipeline whose transformer weights are reachable by the file's keys."""

    base = "flux"

    def __init__(self, artifact: dict[str, Any], device: str, dtype: str) -> None:
        import torch

        from adapters.patch import PatchSet

        self.device, self.dtype = device, dtype
        self._torch_dtype = getattr(torch, dtype)
        parts = artifact.get("parts") or {}
        own = self._own_tensors(artifact)
        shapes = {k: tuple(v.shape) for k, v in own.items()}
        prefix = flux_keys.bfl_prefix(shapes) or ""
        bundled = tuple(p for ps in BUNDLED.values() for p in ps)
        mine = {k: v for k, v in own.items() if k.startswith(prefix) and not k.startswith(bundled)}
        self._weights = _upcast(mine, device, self._torch_dtype)
        self.transformer, self._copies = dit_models.transformer(self._weights)
        self.variant = "dev" if self.transformer.config.guidance_embeds else "schnell"
        self._patches = PatchSet(self._weights)
        clip = self._part(artifact, parts, own, "clip")
        t5 = self._part(artifact, parts, own, "t5")
        vae = self._part(artifact, parts, own, "vae")
        self.pipe = self._pipeline(
            dit_models.clip_text(clip),
            dit_models.t5_encoder(t5),
            dit_models.vae(vae),
            self._t5_tokenizer(artifact, parts),
        )

    @staticmethod
    def _own_tensors(artifact: dict[str, Any]) -> dict[str, Any]:
        return read_state_dict(artifact).tensors

    def _part(
        self, artifact: dict[str, Any], parts: dict[str, Any], own: dict[str, Any], name: str
    ) -> dict[str, Any]:
        """A part's tensors in the compute dtype: the separate file the plan chose, else the
        model's own (a whole checkpoint's section or a diffusers folder's component)."""
        art = parts.get(name)
        if art is not None:
            tensors = read_state_dict(art).tensors
            if name == "vae":
                tensors = _section(tensors, BUNDLED["vae"]) or tensors
            return _upcast(tensors, self.device, self._torch_dtype)
        if artifact["format"] == "diffusers":
            from hub.core.ldm_models import component_weights

            folder = Path(artifact["path"]) / FOLDERS[name]
            return _upcast(component_weights(folder), self.device, self._torch_dtype)
        found = _section(own, BUNDLED[name])
        if found is None:
            raise HubError(f"{artifact['name']} carries no {name} part and none was given")
        return _upcast(found, self.device, self._torch_dtype)

    @staticmethod
    def _t5_tokenizer(artifact: dict[str, Any], parts: dict[str, Any]) -> Any:
        from transformers import T5TokenizerFast

        art = parts.get("tokenizer")
        folder = Path(art["path"]) if art else Path(artifact["path"]) / "tokenizer_2"
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

    def _pipeline(self, clip: Any, t5: Any, vae: Any, tokenizer: Any) -> Any:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        diffusers_logging.set_verbosity_error()
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

        scheduler = FlowMatchEulerDiscreteScheduler(**FLOW_MATCH_COMMON, **FLOW_MATCH[self.variant])
        pipe = FluxPipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=clip,
            tokenizer=clip_tokenizer(),
            text_encoder_2=t5,
            tokenizer_2=tokenizer,
            transformer=self.transformer,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def generate(
        self,
        request: Request,
        extras: Extras,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Any:
        import torch

        if request.sampler not in SAMPLERS:
            raise HubError(
                f"sampler '{request.sampler}' does not run Flux", hint="Flux samplers: Euler"
            )
        if extras.embeddings or extras.hypernetworks:
            raise HubError("embeddings and hypernetworks do not apply to Flux models")
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
                prompt=request.prompt,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance if request.guidance is not None else 3.5,
                width=request.width,
                height=request.height,
                generator=generator,
                max_sequence_length=T5_LENGTH,
                callback_on_step_end=step_end,
                output_type="pil",
            )
        return result.images[0]


def is_flux(artifact: dict[str, Any]) -> bool:
    """A registered checkpoint the Flux backend runs."""
    return artifact["kind"] == "checkpoint" and artifact["base"] == "flux"


@hookimpl(trylast=True)
def load_pipeline(artifact: dict[str, Any], device: str, dtype: str) -> FluxModel | None:
    if not is_flux(artifact) or artifact["format"] not in ("safetensors", "diffusers"):
        return None
    return FluxModel(artifact, device, dtype)
