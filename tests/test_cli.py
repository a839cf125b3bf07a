"""The command line's contract: usage errors are one ``error:`` line and a ``hint:`` line
with their own exit code, and every exit code is listed in ``hub --help`` and the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
EX_USAGE = 64  # sysexits.h


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["list", "--bogus"], ["hub list", "--bogus"]),
        (["show"], ["hub show", "REF"]),
        (["generate", "x", "--steps", "many"], ["hub generate", "--steps", "many"]),
        (["no-such-command"], ["hub", "no-such-command"]),
    ],
)
def test_usage_errors_are_one_line_with_their_own_exit_code(hub, args, names):
    result = hub(*args, ok=False)
    assert result.code == EX_USAGE
    error, hint = result.err.splitlines()
    assert error.startswith("error: ") and all(n in error for n in names)
    command = " ".join(["hub", *[a for a in args[:1] if a != "no-such-command"]])
    assert hint == f"hint: see `{command} --help`"
    assert result.out == ""


def test_usage_and_config_errors_have_different_codes(hub, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[registry\n")
    config = hub("--config", bad, "list", ok=False)
    usage = hub("--config", bad, "list", "--bogus", ok=False)
    assert config.code == 2 and usage.code == EX_USAGE


def _codes(text: str, pattern: str) -> set[int]:
    return {int(m) for m in re.findall(pattern, text, re.MULTILINE)}


def test_every_exit_code_is_listed_in_help_and_readme(hub):
    from hub.core import download
    from hub.core.errors import EXIT_CODES, HubError
    from hub.plugins import sourcing

    assert download and sourcing  # their error classes are HubError subclasses too
    raised, todo = set(), [HubError]
    while todo:
        cls = todo.pop()
        raised.add(int(cls.exit_code))
        todo += cls.__subclasses__()
    expected = {0, 1, 2, 3, 4, EX_USAGE, 70, 130}  # success, errors, usage, bug, Ctrl-C
    assert raised | {0, EX_USAGE, 70, 130} == expected == set(map(int, EXIT_CODES))
    help_text = hub("--help").out
    assert _codes(help_text[help_text.index("Exit codes") :], r"^\W*(\d+): \w") == expected
    readme = README.read_text()
    section = readme.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    assert _codes(section, r"^\| `(\d+)` \|") == expected


def test_every_command_has_json():
    import importlib
    import pkgutil

    import typer

    import hub.cli

    app = typer.Typer()
    for info in pkgutil.iter_modules(hub.cli.__path__):
        if info.name.endswith("_cmd"):  # every command module, also ones added later
            importlib.import_module(f"hub.cli.{info.name}").register(app)
    commands = typer.main.get_command(app).commands
    assert {"rm", "serve", "demo", "generate", "import"} <= set(commands)
    leaves = {  # a command group's subcommands (``hub ui link``) count one by one
        f"{n} {sub}" if sub else n: leaf
        for n, c in commands.items()
        for sub, leaf in (getattr(c, "commands", None) or {None: c}).items()
    }
    assert {"ui link", "ui unlink"} <= set(leaves)
    missing = [n for n, c in leaves.items() if not any("--json" in p.opts for p in c.params)]
    assert missing == []
