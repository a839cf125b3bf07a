"""sd-hub: a package manager for Stable Diffusion weights.

Importing this package is cheap: no torch, diffusers or transformers.
"""

from typing import Any

from hub.core.errors import HubError

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``hookimpl``: the marker of plugin hook implementations (``@hub.hookimpl``), made on
    first use so that commands that load no plugin do not import pluggy."""
    if name != "hookimpl":
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    import pluggy

    marker = pluggy.HookimplMarker("hub")
    globals()["hookimpl"] = marker
    return marker


__all__ = ["HubError", "__version__", "hookimpl"]
