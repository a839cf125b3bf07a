"""What an inference backend receives and provides (the ``load_pipeline`` hook)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from adapters.embedding import Embedding
    from adapters.hypernetwork import Hypernetwork
    from adapters.patch import PatchSet


@dataclass(frozen=True)
class Request:
    """One image to make, with the prompt as the text encoder sees it (tags removed)."""

    prompt: str
    negative: str = ""
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "Euler a"
    schedule: str = "Automatic"
    seed: int = 0
    width: int = 512
    height: int = 512
    clip_skip: int = 1
    guidance: float | None = None  # Flux dev's distilled guidance (None: not used)


@dataclass(frozen=True)
class Extras:
    """The add-ons that do not patch weights: embeddings by prompt name, hypernetworks with
    their strengths, and a VAE's single-file weights (or None for the model's own)."""

    embeddings: tuple[tuple[str, Embedding], ...] = ()
    hypernetworks: tuple[tuple[Hypernetwork, float], ...] = ()
    vae: tuple[str, Mapping[str, torch.Tensor]] | None = None


class LoadedModel(Protocol):
    """A model held in memory by a backend, ready for repeated generation."""

    base: str
    device: str
    dtype: str

    @property
    def weights(self) -> Mapping[str, torch.Tensor]:
        """The live weights by single-file (LDM) key: changing one in place changes the
        model. Weight add-ons are applied through :attr:`patches`."""

    @property
    def patches(self) -> PatchSet:
        """The weight patches in force (kept between generations)."""

    def generate(
        self,
        request: Request,
        extras: Extras,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Image:
        """One image. ``on_step(0, total)`` is called when the first denoising step begins,
        then ``on_step(done, total)`` after each step.
        Embeddings, hypernetworks and the VAE are in force only during the call."""

    def samplers(self) -> list[str]:
        """The sampler names this backend accepts (A1111 spelling)."""
