"""The plugin manager: built-in plugins first, then the ``hub`` entry-point group.

Every hook is called through pluggy's hook caller (``pm.hook.<name>``), so hook wrappers,
tracing and "an implementation may accept a subset of the arguments" apply to all of them.

Loading is lazy and idempotent: :func:`load_plugins` does the work once per process, and
collects every registration hook (``register_*``) then, once. A name registered twice (two
plugins providing the probe ``lora``, say) is a start-up error naming both plugins; this
holds for a built-in too: a third-party plugin replaces a built-in thing only when the
built-in plugin is disabled (``[plugins] disabled = ["civitai"]``), never silently.
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
    "hub.plugins.builtin.dit_probes",
    "hub.plugins.builtin.converters",
    "hub.plugins.builtin.civitai",
    "hub.plugins.builtin.huggingface",
    "hub.plugins.builtin.url",
    "hub.plugins.builtin.merge_methods",
    "hub.plugins.builtin.dit_backend",  # Flux and SD3; before the diffusers backend: asked first
    "hub.plugins.builtin.diffusers_backend",
    "hub.plugins.builtin.read_a1111",
    "hub.plugins.builtin.read_comfyui",
    "hub.plugins.builtin.read_invokeai",
    "hub.plugins.builtin.read_fooocus",
    "hub.plugins.builtin.read_novelai",
    "hub.plugins.builtin.read_sdhub",
    "hub.plugins.builtin.ui_layouts",
    "hub.plugins.builtin.families",
    "hub.plugins.builtin.read_swarmui",
)
BUILTIN_NAMES = frozenset(m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS)
# the hooks that hand a ``register(name, value)`` callback to every plugin
REGISTRATION_HOOKS = tuple(
    name
    for name in dir(hookspecs)
    if name.startswith("register_")
    and name != "register_commands"
    and hasattr(getattr(hookspecs, name), "hub_spec")
)

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A thing a plugin registered under a name."""

    name: str
    plugin: str
    value: T


@dataclass
class _Loaded:
    pm: pluggy.PluginManager
    disabled: frozenset[str]
    registry: dict[str, dict[str, Registered[Any]]]


_loaded: _Loaded | None = None
_disabled: frozenset[str] = frozenset()


def configure(disabled: frozenset[str]) -> None:
    """Set the plugin names not to load. Called after the plugins loaded with another set,
    it drops them: the next :func:`load_plugins` loads again with the new set."""
    global _disabled, _loaded
    _disabled = frozenset(disabled)
    if _loaded is not None and _loaded.disabled != _disabled:
        _loaded = None


def load_plugins() -> pluggy.PluginManager:
    """The plugin manager with every built-in and installed plugin registered (once), and
    every registration hook collected."""
    global _loaded
    if _loaded is not None:
        return _loaded.pm
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
    _loaded = _Loaded(pm, _disabled, _collect_all(pm))
    return pm


def add_plugin(plugin: object, name: str) -> None:
    """Register one more plugin (tests, embedding applications) and collect its
    registrations; a name it registers that another plugin has raises :class:`PluginError`."""
    pm = load_plugins()
    pm.register(plugin, name=name)
    assert _loaded is not None
    try:
        _loaded.registry = _collect_all(pm)
    except PluginError:
        pm.unregister(plugin)
        raise


def reset_plugins() -> None:
    """Forget the loaded plugins (tests register their own)."""
    global _loaded
    _loaded = None


def collect(hook_name: str) -> dict[str, Registered[Any]]:
    """What every plugin registered through a registration hook, by name (collected once,
    when the plugins loaded)."""
    load_plugins()
    assert _loaded is not None
    return _loaded.registry[hook_name]


def _collect_all(pm: pluggy.PluginManager) -> dict[str, dict[str, Registered[Any]]]:
    return {hook: _collect(pm, hook) for hook in REGISTRATION_HOOKS}


def _collect(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Registered[Any]]:
    """Call a registration hook through pluggy's hook caller, once per providing plugin
    (a subset caller that keeps every wrapper), so that each registration is attributed to
    its plugin. A name registered twice raises :class:`PluginError` naming both plugins."""
    found: dict[str, Registered[Any]] = {}
    providers = [
        impl
        for impl in getattr(pm.hook, hook_name).get_hookimpls()
        if not (impl.wrapper or impl.hookwrapper)
    ]
    for impl in reversed(providers):  # pluggy's call order

        def register(name: str, value: Any, _plugin: str = impl.plugin_name) -> None:
            if name in found:
                raise PluginError(
                    f"{hook_name}: '{name}' is registered by both plugin "
                    f"'{found[name].plugin}' and plugin '{_plugin}'",
                    hint="disable one of them in hub.toml [plugins] disabled = [...]",
                )
            found[name] = Registered(name, _plugin, value)

        others = [other.plugin for other in providers if other is not impl]
        pm.subset_hook_caller(hook_name, others)(register=register)
    return found


def plugin_info() -> list[dict[str, Any]]:
    """Every loaded plugin with its version, the hooks it implements and what it registered
    (``probes:lora``, ``sources:civitai`` ...)."""
    pm = load_plugins()
    dists = {
        ep.name: (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
    }
    from hub import __version__

    provided: dict[str, list[str]] = {}
    for hook in REGISTRATION_HOOKS:
        for name, reg in collect(hook).items():
            provided.setdefault(reg.plugin, []).append(f"{hook.removeprefix('register_')}:{name}")
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
                "builtin": name in BUILTIN_NAMES,
                "provides": provided.get(name, []),
            }
        )
    return rows
