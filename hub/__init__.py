"""sd-hub: a package manager for Stable Diffusion weights.

Importing this package is cheap: no torch, diffusers or transformers.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("hub")
"""Marker for plugin hook implementations: ``@hub.hookimpl``."""

from hub.core.errors import HubError  # noqa: E402

__all__ = ["HubError", "__version__", "hookimpl"]
