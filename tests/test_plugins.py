"""The plugin system: one test per hook, entry-point loading, duplicate names."""

from __future__ import annotations

import os
import textwrap

import pytest

from hub import hookimpl, plugins
from hub.core.errors import PluginError
from hub.core.taxonomy import Base, Kind
from hub.plugins.probing import Verdict
from hub.register import identify_path


class MagicProbe:
    """A third-party probe that claims files holding a tensor named 'magic'."""

    @hookimpl
    def register_probes(self, register):
        def magic(subject):
            if "magic" in subject.keys:
                return Verdict("magic", True, "has a magic tensor", Kind.VAE, Base.SDXL, score=200)
            return Verdict("magic", False, "no magic tensor")

        register("magic", magic)


def test_register_probes_hook_adds_a_probe_that_runs_on_every_file(ctx, tmp_path, models):
    import torch
    from safetensors.torch import save_file

    plugins.add_plugin(MagicProbe(), name="magic-plugin")
    path = tmp_path / "m.safetensors"
    save_file({"magic": torch.zeros(3)}, path)
    ident = identify_path(ctx, path)
    assert (ident.best.probe, ident.best.kind, ident.best.base) == ("magic", "vae", "sdxl")
    other = identify_path(ctx, models["emb-sd1"])
    assert other.best.kind == "embedding"
    assert any(v.probe == "magic" and not v.matched for v in other.verdicts)


def test_duplicate_probe_name_fails_naming_both_plugins(ctx):
    class Dupe:
        @hookimpl
        def register_probes(self, register):
            register("lora", lambda subject: None)

    with pytest.raises(PluginError) as err:
        plugins.add_plugin(Dupe(), name="dupe-plugin")
    message = err.value.message
    assert "probes" in message and "'dupe-plugin'" in message and "'probes'" in message
    assert plugins.load_plugins().get_plugin("dupe-plugin") is None  # refused, not half-loaded
    assert plugins.collect("register_probes")["lora"].plugin == "probes"


def test_load_plugins_is_lazy_and_idempotent():
    plugins.reset_plugins()
    first = plugins.load_plugins()
    assert plugins.load_plugins() is first
    assert first.get_plugin("probes") is not None


def test_configure_after_loading_reloads_with_the_new_disabled_set():
    plugins.reset_plugins()
    plugins.configure(frozenset())
    assert "civitai" in plugins.collect("register_sources")
    plugins.configure(frozenset({"civitai"}))
    pm = plugins.load_plugins()
    assert pm.get_plugin("civitai") is None and "civitai" not in plugins.collect("register_sources")
    assert "huggingface" in plugins.collect("register_sources")
    plugins.configure(frozenset())
    assert plugins.load_plugins().get_plugin("civitai") is not None
    plugins.reset_plugins()


def test_a_hook_wrapper_sees_every_hook_call_and_its_result(ctx):
    calls: list[tuple[str, object]] = []

    class Recorder:
        """Wraps the hooks sd-hub calls; a wrapper may take a subset of the arguments."""

        @hookimpl(wrapper=True)
        def register_probes(self, register):
            result = yield
            calls.append(("register_probes", result))
            return result

        @hookimpl(wrapper=True)
        def load_pipeline(self, artifact):
            result = yield
            calls.append(("load_pipeline", artifact["name"]))
            return result

    class Backend:
        @hookimpl
        def load_pipeline(self, artifact, device, dtype):
            return f"model of {artifact['name']} on {device}"

    plugins.add_plugin(Backend(), name="backend")
    plugins.add_plugin(Recorder(), name="recorder")
    # adding a plugin collects again: one call per providing plugin (the built-in probe
    # modules), each seen by the wrapper
    impls = plugins.load_plugins().hook.register_probes.get_hookimpls()
    providers = [i.plugin_name for i in impls if not i.wrapper]
    assert {"probes", "dit_probes"} <= set(providers)
    assert calls == [("register_probes", [])] * len(providers)
    hook = plugins.load_plugins().hook
    answer = hook.load_pipeline(artifact={"name": "m"}, device="cpu", dtype="float32")
    assert answer == "model of m on cpu" and calls[-1] == ("load_pipeline", "m")


@pytest.fixture
def third_party(tmp_path, hub):
    """An installed plugin distribution: a module plus dist-info with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hub_hello.py").write_text(
        textwrap.dedent('''
        import hub
        from hub.plugins.probing import Verdict

        @hub.hookimpl
        def register_commands(app):
            @app.command("hello")
            def hello(who: str = "world"):
                """Say hello."""
                print(f"hello {who}")

        @hub.hookimpl
        def register_probes(register):
            register("hello_probe", lambda s: Verdict("hello_probe", False, "never mine"))
    ''')
    )
    dist = site / "hub_hello-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hub-hello\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[hub]\nhello = hub_hello\n")
    hub.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), hub.env.get("PYTHONPATH")) if p)
    return site


def test_register_commands_hook_from_an_entry_point(hub, third_party):
    assert hub("hello", "--who", "sd").out.strip() == "hello sd"


def test_hub_plugins_lists_versions_hooks_and_names(hub, third_party):
    rows = {r["name"]: r for r in hub("plugins", "--json").json()}
    assert rows["hello"]["package"] == "hub-hello" and rows["hello"]["version"] == "1.2.3"
    assert rows["hello"]["hooks"] == ["register_commands", "register_probes"]
    assert "probes:hello_probe" in rows["hello"]["provides"]
    assert rows["probes"]["builtin"] and "probes:lora" in rows["probes"]["provides"]


def test_third_party_probe_is_recorded_in_show_why(hub, third_party, models):
    hub("import", models["emb-sd1"], "--name", "e")
    why = {v["probe"]: v for v in hub("show", "e", "--why", "--json").json()["why"]}
    assert why["hello_probe"]["reason"] == "never mine"


def test_disabled_plugin_is_not_loaded(hub, third_party):
    hub.env["HUB_DISABLE_PLUGINS"] = "hello"
    names = {r["name"] for r in hub("plugins", "--json").json()}
    assert "hello" not in names and "probes" in names


def test_plugin_that_fails_to_import_is_a_clear_error(hub, third_party):
    (third_party / "hub_hello.py").write_text("raise ImportError('boom')\n")
    result = hub("plugins", ok=False)
    assert result.code != 0 and "plugin 'hello'" in result.err and "boom" in result.err
    assert "Traceback" not in result.err
