"""The math of Stable Diffusion add-ons on plain torch tensors.

This package never imports ``hub``. Modules that only look at key names (``keys``) import
no torch, so the registry's probes can use them on a safetensors header.
"""
