"""The real architectures of the supported bases, as diffusers/transformers configs.

Mini models shrink the channels of these (hub.minimodels); LoRA key tables take module names
from them (hub.core.lora_keys); benchmarks build full-size random checkpoints from them.
"""

from __future__ import annotations

from typing import Any

SD1_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8,
)  # fmt: skip
SD2_UNET: dict[str, Any] = {
    **SD1_UNET,
    "sample_size": 96,
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "attention_head_dim": (5, 10, 20, 20),
}
SDXL_UNET: dict[str, Any] = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)  # fmt: skip
UNETS = {"sd1": SD1_UNET, "sd2": SD2_UNET, "sdxl": SDXL_UNET}
VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
)  # fmt: skip
CLIP_L: dict[str, Any] = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)  # fmt: skip
CLIP_H: dict[str, Any] = {
    **CLIP_L,
    "hidden_size": 1024,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "projection_dim": 1024,
}
CLIP_G: dict[str, Any] = {
    **CLIP_L,
    "hidden_size": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "intermediate_size": 5120,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
