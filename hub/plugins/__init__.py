"""The plugin manager: built-in plugins first, then the ``hub`` entry-point group.

Loading is lazy and idempotent: :func:`load_plugins` does the work once per process.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

import pluggy

from hub.core.errors import PluginError
from hub.plugins import hookspecs

ENTRY_POINT_GROUP = "hub"
BUILTIN_PLUGINS = (
    "hub.plugins.builtin.probes",
    "hub.plugins.builtin.converters",
    "hub.plugins.builtin.civitai",
    "hub.plugins.builtin.huggingface",
    "hub.plugins.builtin.url",
    "hub.plugins.builtin.merge_methods",
    "hub.plugins.builtin.diffusers_backend",
    "hub.plugins.builtin.read_a1111",
    "hub.plugins.builtin.read_comfyui",
    "hub.plugins.builtin.read_invokeai",
    "hub.plugins.builtin.read_fooocus",
    "hub.plugins.builtin.read_novelai",
    "hub.plugins.builtin.read_sdhub",
    "hub.plugins.builtin.read_swarmui",
)

_pm: pluggy.PluginManager | None = None
_disabled: frozenset[str] = frozenset()
T = TypeVar("T")


def configure(disabled: frozenset[str]) -> None:
    """Set the plugin names not to load; takes effect at the first :func:`load_plugins`."""
    global _disabled
    if _pm is None:
        _disabled = disabled


def load_plugins() -> pluggy.PluginManager:
    """The plugin manager with every built-in and installed plugin registered (once)."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("hub")
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        if name not in _disabled:
            pm.register(importlib.import_module(module_name), name=name)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _disabled:
            continue
        if pm.get_plugin(ep.name) is not None:
            raise PluginError(
                f"plugin name '{ep.name}' from {ep.value} is taken by a built-in plugin",
                hint=f"disable one of them in hub.toml [plugins] disabled = ['{ep.name}']",
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the cause
            raise PluginError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        pm.register(plugin, name=ep.name)
    _pm = pm
    return pm


def reset_plugins() -> None:
    """Forget the loaded plugins (tests register their own)."""
    global _pm
    _pm = None


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A thing a plugin registered under a name."""

    name: str
    plugin: str
    value: T


def collect(hook_name: str) -> dict[str, Registered[Any]]:
    """Call a collect hook on every plugin, in pluggy's call order, gathering registrations.

    A name registered twice raises :class:`PluginError` naming both plugins.
    """
    pm = load_plugins()
    found: dict[str, Registered[Any]] = {}
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):

        def register(name: str, value: Any, _plugin: str = impl.plugin_name) -> None:
            if name in found:
                raise PluginError(
                    f"{hook_name}: '{name}' is registered by both plugin "
                    f"'{found[name].plugin}' and plugin '{_plugin}'",
                    hint="disable one of them in hub.toml [plugins] disabled = [...]",
                )
            found[name] = Registered(name, _plugin, value)

        impl.function(register=register)
    return found


def plugin_info() -> list[dict[str, Any]]:
    """Every loaded plugin with its version and the hooks it implements."""
    pm = load_plugins()
    dists = {
        ep.name: (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
    }
    from hub import __version__

    rows = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = dists.get(name, ("sd-hub", __version__))
        rows.append(
            {
                "name": name,
                "package": dist,
                "version": version,
                "hooks": hooks,
                "builtin": name in {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS},
            }
        )
    return rows
