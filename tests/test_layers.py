"""The layers of the tree, read from every module's imports with ``ast`` (function-level and
``TYPE_CHECKING`` imports included): what may import what is README's "How the code is
laid out"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Known violations, each with its reason: (importer, imported). Each entry must still be a
# violation (the last test fails on a stale one).
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str:
    """``hub.plugins.sourcing.Choice`` -> ``hub.plugins.sourcing``: the longest prefix that
    is a module or package in the tree."""
    parts = name.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def imports_of(path: Path) -> set[str]:
    """Every module of this tree (``hub...``, ``adapters...``) that ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {_resolve(n) for n in names if n.split(".")[0] in ("hub", "adapters")}
    return found


def _modules() -> dict[str, set[str]]:
    return {
        _module_name(p): imports_of(p)
        for top in ("hub", "adapters")
        for p in sorted((ROOT / top).rglob("*.py"))
        if "migrations" not in p.parts
    }


MODULES = _modules()


def _layer(module: str) -> str:
    """``adapters``, ``core``, ``registry``, ``plugins``, ``builtin``, ``cli``, ``service``
    (a top-level ``hub/*.py`` module), or ``root`` (``hub`` itself, ``hub.__main__``)."""
    parts = module.split(".")
    if parts[0] == "adapters":
        return "adapters"
    if module in ("hub", "hub.__main__"):
        return "root"
    if parts[1] == "plugins":
        return "builtin" if len(parts) > 2 and parts[2] == "builtin" else "plugins"
    if parts[1] in ("core", "registry", "cli"):
        return parts[1]
    return "service"


def _rule_breaks(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None."""
    src, dst = _layer(importer), _layer(imported)
    if src == "adapters" and imported.startswith("hub"):
        return "adapters/ never imports hub"
    # ``hub`` itself (the version, the hookimpl marker) is below every layer: importing any
    # hub module runs it anyway
    if src == "core" and dst not in ("core", "adapters", "root"):
        return "hub/core/ imports only hub/core (and the tensor math in adapters/)"
    if src == "registry" and dst not in ("core", "registry", "root"):
        return "hub/registry/ imports only hub/core and itself"
    if src in ("plugins", "builtin") and dst == "service":
        return "plugins never import services"
    if src == "service" and dst == "builtin":
        return "services reach built-in plugins through the plugin manager only"
    if dst == "cli" and src not in ("cli", "root"):
        return "only hub/cli/ imports hub.cli"
    return None


def violations() -> dict[tuple[str, str], str]:
    return {
        (importer, imported): why
        for importer, imported_set in MODULES.items()
        for imported in imported_set
        if (why := _rule_breaks(importer, imported))
    }


def test_the_scan_sees_imports_of_every_form():
    assert "hub.plugins.sourcing" in MODULES["hub.install"]  # from hub.plugins.sourcing import
    assert "hub.plugins" in MODULES["hub.context"]  # from hub import plugins (in a method)
    assert "hub.core.errors" in MODULES["hub.plugins"]
    assert {_layer(m) for m in MODULES} == {
        "adapters",
        "core",
        "registry",
        "plugins",
        "builtin",
        "cli",
        "service",
        "root",
    }


@pytest.mark.parametrize(
    ("importer", "imported", "rule"),
    [
        ("adapters.lora", "hub.core.errors", "adapters/ never imports hub"),
        ("hub.core.files", "hub.registry.db", "hub/core/ imports only hub/core"),
        ("hub.registry.db", "hub.plugins", "hub/registry/ imports only hub/core and itself"),
        ("hub.plugins.builtin.url", "hub.install", "plugins never import services"),
        ("hub.install", "hub.plugins.builtin.civitai", "services reach built-in"),
        ("hub.serve", "hub.cli.output", "only hub/cli/ imports hub.cli"),
    ],
)
def test_each_rule_catches_its_violation(importer, imported, rule):
    assert (_rule_breaks(importer, imported) or "").startswith(rule)


def test_no_module_crosses_a_layer():
    found = {pair: why for pair, why in violations().items() if pair not in ALLOWED}
    assert not found, "\n".join(f"{a} imports {b}: {why}" for (a, b), why in sorted(found.items()))


def test_the_allow_list_holds_only_real_violations():
    assert set(violations()) >= ALLOWED, sorted(ALLOWED - set(violations()))
