"""Extension points as the core declares them, without a plugin: ``hub convert`` names the
declared target formats when asked for an unknown one, and merge methods declare their options
(``--option KEY=VALUE``, with ``--density``/``--seed`` as shorthands). A third party's own
converter (GGUF) and merge method (``clamp``) are tested through the installed package in
tests/test_external_plugin.py."""

from __future__ import annotations

import json

import minimodels as tm
import pytest
import torch
from safetensors.torch import load_file

from hub.convert import convert
from hub.importing import import_path
from hub.register import Overrides


def test_unknown_target_lists_the_declared_ones(ctx, models):
    from hub.core.errors import HubError

    import_path(ctx, models["mini-sd1"], Overrides(name="base"))
    with pytest.raises(HubError) as err:
        convert(ctx, "base", to="gguf")  # the plugin is not registered here
    assert "unknown target format 'gguf'" in err.value.message
    assert "diffusers" in err.value.hint and "kohya" in err.value.hint


def _checkpoints(hub, n: int) -> list[dict[str, torch.Tensor]]:
    paths = [tm.mini_checkpoint("sd1", dtype=torch.float32, seed=s) for s in range(n)]
    for i, p in enumerate(paths):
        hub("import", p, "--name", f"m{i}")
    return [load_file(p) for p in paths]


def test_option_equals_its_shorthand_for_builtin_methods(hub):
    help_text = " ".join(hub("merge", "--help").out.split())
    assert "dare (2 to 8 checkpoints): density=0.2 (float)" in help_text
    _checkpoints(hub, 2)
    base = ("merge", "m0", "--with", "m1", "--method", "dare")
    one = hub(*base, "--seed", "3", "--density", "0.5", "--name", "s", "--json").json()
    two = hub(*base, "--option", "seed=3", "--option", "density=0.5", "--name", "s", "--json")
    assert one["status"] == "added" and two.json()["status"] == "exists"  # the same bytes
    assert two.json()["id"] == one["id"]
    recipe = json.loads(load_metadata(one["path"])["sd_merge_recipe"])
    assert (recipe["method"], recipe["seed"], recipe["density"]) == ("dare", 3, 0.5)
    bad = hub("merge", "m0", "--with", "m1", "--density", "0.3", "--name", "w", ok=False)
    assert bad.code == 64 and "weighted-sum has no option 'density'" in bad.err
    assert "weighted-sum takes no options" in bad.err


def load_metadata(path: str) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, "np") as fh:
        return fh.metadata()


def test_merge_options_are_validated_against_the_declared_ones(ctx):
    from hub.core.errors import UsageError
    from hub.merge import merge_method, merge_methods

    assert {"weighted-sum", "add-difference", "ties", "dare"} <= set(merge_methods(ctx))
    assert merge_method(ctx, "dare").settings({"seed": "7"}) == {"density": 0.2, "seed": 7}
    with pytest.raises(UsageError) as err:
        merge_method(ctx, "dare").settings({"seed": "1.5"})
    assert err.value.message == "merge method dare: option seed takes an integer, not '1.5'"
    assert err.value.hint == "dare options: density=0.2 (float), seed=0 (int)"
    with pytest.raises(UsageError) as err:
        merge_method(ctx, "nope")
    assert "dare" in err.value.hint
